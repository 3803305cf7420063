"""The ages we can predict and the text prompts CLIP compares a photo against."""

from collections.abc import Sequence

AGES: tuple[int, ...] = tuple(range(1, 100))

# The original model's single prompt. Change TEMPLATES to try others: with several
# templates the embeddings of one age are averaged (prompt ensembling).
CARD_TEMPLATE = "this person is {age} years old"
TEMPLATES: tuple[str, ...] = (CARD_TEMPLATE,)


def check_template(template: str) -> str:
    """Return the template if it names the age exactly once, else raise ValueError."""
    if template.count("{age}") != 1:
        raise ValueError(
            f"Prompt template {template!r} must contain '{{age}}' exactly once, "
            f"for example {CARD_TEMPLATE!r}."
        )
    return template


def prompts_for(template: str) -> list[str]:
    """One prompt per age in AGES, in order."""
    check_template(template)
    return [template.replace("{age}", str(age)) for age in AGES]


def prompt_grid(templates: Sequence[str]) -> list[list[str]]:
    """prompts[t][i] is template t filled with AGES[i]."""
    if not templates:
        raise ValueError("At least one prompt template is needed.")
    return [prompts_for(template) for template in templates]


PROMPTS: list[str] = prompts_for(CARD_TEMPLATE)

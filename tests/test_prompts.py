import pytest

from prompts import AGES, CARD_TEMPLATE, PROMPTS, TEMPLATES, prompt_grid, prompts_for


def test_ages_are_1_to_99_in_order():
    assert AGES == tuple(range(1, 100))


def test_the_card_prompts_exactly():
    assert len(PROMPTS) == 99
    assert PROMPTS[0] == "this person is 1 years old"
    assert PROMPTS[41] == "this person is 42 years old"
    assert PROMPTS[-1] == "this person is 99 years old"
    assert PROMPTS == [f"this person is {n} years old" for n in range(1, 100)]


def test_default_templates_are_the_card_template():
    assert TEMPLATES == (CARD_TEMPLATE,) == ("this person is {age} years old",)


def test_grid_has_one_row_per_template():
    grid = prompt_grid(["a photo of a {age} year old person", CARD_TEMPLATE])
    assert [len(row) for row in grid] == [99, 99]
    assert grid[0][9] == "a photo of a 10 year old person"
    assert grid[1] == PROMPTS


@pytest.mark.parametrize("bad", ["no age here", "{age} and {age}", "{n} years"])
def test_template_must_name_the_age_once(bad):
    with pytest.raises(ValueError, match=r"must contain '\{age\}' exactly once"):
        prompts_for(bad)


def test_no_templates_is_an_error():
    with pytest.raises(ValueError, match="At least one prompt template"):
        prompt_grid([])

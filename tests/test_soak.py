"""Many clients, good and bad photos mixed: every request is answered once, the server stays up."""

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from tests import hostile_files as hostile
from tests.cog_server import LocalCogServer
from tests.conftest import EXAMPLES, data_uri
from tests.image_corpus import png_bomb, save

pytestmark = pytest.mark.slow

REQUESTS = 300
CLIENTS = 8
WARM_UP = 150  # RSS climbs over the first couple of hundred requests (allocator arenas, threads)


def good_inputs() -> list[dict]:
    astronaut = Image.open(EXAMPLES / "astronaut.png").convert("RGB")
    photos = [
        (EXAMPLES / "astronaut_face.jpg").read_bytes(),
        (EXAMPLES / "coffee.png").read_bytes(),
        save(astronaut.resize((1024, 768)), "JPEG", quality=90),
        save(astronaut, "WEBP", quality=90),
        save(astronaut.resize((300, 300)), "HEIF", quality=80),
    ]
    inputs = [{"image": data_uri(photo)} for photo in photos]
    inputs.append({"image": data_uri(photos[0]), "return_probabilities": True})
    inputs.append({"image": data_uri(photos[2]), "detect_faces": True})
    return inputs


BAD_INPUTS = [
    ({"image": data_uri(b"")}, "The file is empty (0 bytes)."),
    ({"image": data_uri(b"%PDF-1.7 nope")}, "it looks like a PDF document"),
    (
        {"image": data_uri((EXAMPLES / "astronaut_face.jpg").read_bytes()[:600])},
        "The JPEG image is truncated or corrupt",
    ),
    (
        {"image": data_uri(save(Image.new("RGB", (8, 8)), "PNG"))},
        "it must be at least 16 pixels on each side",
    ),
    ({"image": data_uri(png_bomb(50_000, 50_000))}, "the limit is 120 megapixels"),
    ({}, "Send the photo as 'image'"),
    ({"image": "/etc/hostname"}, "Send the photo as 'image'"),
    ({"image": data_uri(hostile.jpeg_scan_bomb())}, "more than 64 progressive scans"),
    ({"image": data_uri(hostile.jpeg_declared_huge())}, "so it was cut short"),
    ({"image": data_uri(hostile.png_iccp_bomb(16 << 20))}, "decompresses to more than"),
    ({"image": data_uri(hostile.tiff_flat())}, "(MAX_DECODED_MB)"),
]


def test_soak_mixed_good_and_bad_requests_from_concurrent_clients(tiny_model_dir, yunet_model):
    goods = good_inputs()
    # Two good requests to every bad one, in a fixed interleaving.
    plan = []
    good_cycle, bad_cycle = itertools.cycle(goods), itertools.cycle(BAD_INPUTS)
    for index in range(WARM_UP + REQUESTS):
        if index % 3 == 2:
            inputs, message = next(bad_cycle)
            plan.append((index, inputs, message))
        else:
            plan.append((index, next(good_cycle), None))

    env = {"CLIP_MODEL": f"local-dir:{tiny_model_dir}", "CLIP_DEVICE": "cpu"}
    slow = {"image": data_uri(hostile.png_flat()), "detect_faces": True}
    with LocalCogServer(env) as server:
        assert server.wait_until_ready()["status"] == "READY"
        health_seen: list[str] = []
        stop = threading.Event()

        def watch_health() -> None:
            while not stop.is_set():
                health_seen.append(server.health()["status"])
                time.sleep(0.05)

        def send(step):
            index, inputs, message = step
            prediction, conflicts = server.predict(inputs)
            return index, message, prediction, conflicts

        with ThreadPoolExecutor(CLIENTS) as clients:
            warm = list(clients.map(send, plan[:WARM_UP]))
            rss_after_warm_up = server.rss_bytes()
            watcher = threading.Thread(target=watch_health)
            watcher.start()
            started = time.perf_counter()
            soaking = clients.map(send, plan[WARM_UP:])
            # In the middle of it, a slow upload is started and cancelled.
            server.start_prediction(slow, "cancelled-in-the-soak")
            time.sleep(0.3)
            cancelled = server.cancel("cancelled-in-the-soak")
            answers = list(soaking)
            elapsed = time.perf_counter() - started
            stop.set()
            watcher.join()
        rss_after_soak = server.rss_bytes()
        final_health = server.health()["status"]

    ids = [prediction["id"] for _, _, prediction, _ in warm + answers]
    assert len(ids) == len(set(ids)) == WARM_UP + REQUESTS  # none lost, none answered twice
    assert sorted(index for index, *_ in answers) == list(range(WARM_UP, WARM_UP + REQUESTS))
    for index, message, prediction, _ in answers:
        if message is None:
            assert prediction["status"] == "succeeded", (index, prediction)
            assert 1 <= prediction["output"]["age"] <= 99
        else:
            assert prediction["status"] == "failed", (index, prediction)
            assert message in prediction["error"], (index, prediction["error"])
            assert "Traceback" not in prediction["error"]
    batch_sizes = [p["metrics"]["batch_size"] for _, m, p, _ in answers if m is None]
    assert min(batch_sizes) >= 1 and max(batch_sizes) > 1  # concurrent requests shared batches
    # BUSY: every slot taken (more clients than slots), which is what 409s are for; never unhealthy.
    assert health_seen and set(health_seen) <= {"READY", "BUSY"}
    assert final_health == "READY"
    assert cancelled == 200
    growth = rss_after_soak / rss_after_warm_up - 1
    print(
        f"\nsoak: {REQUESTS} requests, {CLIENTS} clients, {elapsed:.1f} s, "
        f"{sum(1 for *_, p, _ in answers if p['status'] == 'failed')} refused as planned, "
        f"409s {sum(c for *_, c in answers)}, largest shared batch {max(batch_sizes)}, RSS {rss_after_warm_up / 1e6:.0f} MB after warm-up, "
        f"{rss_after_soak / 1e6:.0f} MB after ({growth:+.1%})"
    )
    assert abs(growth) <= 0.20


def test_overload_answers_409_and_clients_that_retry_all_succeed(tiny_model_dir):
    photo = {"image": data_uri((EXAMPLES / "astronaut.png").read_bytes())}
    with LocalCogServer(
        {"CLIP_MODEL": f"local-dir:{tiny_model_dir}", "CLIP_DEVICE": "cpu"}, max_concurrency=2
    ) as server:
        assert server.wait_until_ready()["status"] == "READY"
        with ThreadPoolExecutor(8) as clients:
            results = list(clients.map(lambda _: server.predict(photo), range(24)))
        assert server.health()["status"] == "READY"
    assert all(prediction["status"] == "succeeded" for prediction, _ in results)
    assert sum(conflicts for _, conflicts in results) > 0

"""Reloading the config: by POST /-/reload and by SIGHUP; a broken config is refused whole."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import time
from pathlib import Path

import bcrypt
import httpx
import pytest
import yaml
from conftest import run_virtual
from exposition import samples, value
from processes import exporter_process, simulator_process, wait_for
from upstream import running_exporter, running_simulator, static_env

from exporter.cli import LongLived, loader
from exporter.config.flags import parse_args
from exporter.config.load import load_config, parse_config
from exporter.config.shard import Shard
from exporter.running.reload import Reloader, ReloadState
from exporter.simulator import Faults
from exporter.web.auth import load_web_config
from exporter.web.server import TlsContext
from exporter.wiring import Lasting, build

NOW = time.time()
RELOAD_OK = "anthropic_work_exporter_config_last_reload_successful"
RELOAD_AT = "anthropic_work_exporter_config_last_reload_success_timestamp_seconds"


def write_config(path: Path, url: str, *env_ids: str) -> None:
    environments = [
        {"id": e, "credentials": {"type": "environment_key", "value_env": f"KEY_{e}"}} for e in env_ids
    ]
    path.write_text(yaml.safe_dump({"api": {"base_url": url}, "environments": environments}))


def listed(body: str) -> set[str]:
    return {
        dict(labels)["environment_id"]
        for (name, labels) in samples(body)
        if name == "anthropic_work_scrape_success"
    }


def test_post_reload_applies_a_good_config_and_refuses_a_broken_one_whole(tmp_path):
    a, b = static_env("env_a", 3, NOW), static_env("env_b", 4, NOW)
    environ = {"KEY_env_a": a.key, "KEY_env_b": b.key}
    path = tmp_path / "config.yaml"
    with running_simulator(a, b) as (_sim, url):
        write_config(path, url, "env_a")
        args = parse_args(["--config.file", str(path)])
        initial = (load_config(path, environ), None)
        with running_exporter(initial[0], load=loader(args, environ)) as exporter:
            base = f"http://{exporter.address}"
            before = httpx.get(f"{base}/metrics").text
            write_config(path, url, "env_a", "env_b")
            good = httpx.post(f"{base}/-/reload")
            after_good = httpx.get(f"{base}/metrics").text
            path.write_text("environments:\n  - id: env_a\n    colour: red\n")
            bad = httpx.post(f"{base}/-/reload")
            after_bad = httpx.get(f"{base}/metrics").text
            landing = httpx.get(f"{base}/").text
    assert listed(before) == {"env_a"}
    assert (good.status_code, good.text) == (200, "Reloaded.\n")
    assert "<p class=failed>The last reload was refused; the config loaded at" in landing  # in red
    assert "environments[0].colour: unknown key" in landing
    assert listed(after_good) == {"env_a", "env_b"}
    assert value(samples(after_good), RELOAD_OK) == 1
    assert value(samples(after_good), RELOAD_AT) >= value(samples(before), RELOAD_AT) > 0
    assert bad.status_code == 500
    assert f"{path}:3: environments[0].colour: unknown key" in bad.text
    assert listed(after_bad) == {"env_a", "env_b"}  # the running config stays
    assert value(samples(after_bad), RELOAD_OK) == 0


def test_an_in_flight_scrape_finishes_on_the_config_it_started_with(tmp_path):
    """env_slow's answers wait (its latency) until the reload is done: the scrape in flight is the
    old config's whatever the machine's speed."""
    slow = static_env("env_slow", 3, NOW, faults=Faults(latency_seconds=1.0))
    other = static_env("env_other", 3, NOW)
    environ = {"KEY_env_slow": slow.key, "KEY_env_other": other.key}
    path = tmp_path / "config.yaml"
    reloaded = threading.Event()
    with running_simulator(slow, other, sleep=lambda _: reloaded.wait(30)) as (sim, url):
        write_config(path, url, "env_slow")
        args = parse_args(["--config.file", str(path)])
        with running_exporter(load_config(path, environ), load=loader(args, environ)) as exporter:
            base = f"http://{exporter.address}"
            answers: list[httpx.Response] = []
            scrape = threading.Thread(target=lambda: answers.append(httpx.get(f"{base}/metrics", timeout=30)))
            scrape.start()
            wait_for("the scrape to reach the API", lambda: sim.in_flight == 1)
            write_config(path, url, "env_other")
            assert exporter.reload() == []
            reloaded.set()
            scrape.join()
            after = httpx.get(f"{base}/metrics").text
    (during,) = answers
    assert listed(during.text) == {"env_slow"}
    assert value(samples(during.text), "anthropic_work_scrape_success", environment_id="env_slow") == 1
    assert listed(after) == {"env_other"}


def test_sighup_reloads_the_config_and_a_second_sighup_does_too(tmp_path):
    with simulator_process("--static", "2", "3") as sim:
        first, second = list(sim["environments"])
        keys = {f"KEY_{e}": key for e, key in sim["environments"].items()}
        write_config(tmp_path / "config.yaml", sim["url"], first)
        with exporter_process("--config.file", "config.yaml", env=keys, cwd=tmp_path) as (url, log):
            assert listed(httpx.get(f"{url}/metrics").text) == {first}
            pid = _pid_listening(log)
            write_config(tmp_path / "config.yaml", sim["url"], first, second)
            os.kill(pid, signal.SIGHUP)
            wait_for("the reload", lambda: listed(httpx.get(f"{url}/metrics").text) == {first, second})
            write_config(tmp_path / "config.yaml", sim["url"], second)
            os.kill(pid, signal.SIGHUP)
            wait_for("the second reload", lambda: listed(httpx.get(f"{url}/metrics").text) == {second})
            assert httpx.get(f"{url}/-/healthy").status_code == 200
        assert log.read_text().count('msg="config reloaded"') == 2


def _pid_listening(log: Path) -> int:
    for line in log.read_text().splitlines():
        if "msg=listening" in line:
            return int(line.split(" pid=")[1].split()[0])
    raise AssertionError(log.read_text())


BCRYPT_PW = "$2y$04$5rdYXI91QPOFthQdfP4jSerUv2iCnvWhLd/KhtLAdmNXDUKCgnHaq"  # "pw", cost 4


def test_the_web_config_reloads_too_but_not_tls_on_or_off(pki):
    env = static_env("env_a", 1, NOW)
    path, web_path = pki / "config.yaml", pki / "web.yml"
    environ = {"KEY_env_a": env.key}
    with running_simulator(env) as (_sim, url):
        write_config(path, url, "env_a")
        web_path.write_text("")
        args = parse_args(["--config.file", str(path), "--web.config.file", str(web_path)])
        load = loader(args, environ)
        config, web = load()
        with running_exporter(config, web, load=load) as exporter:
            base = f"http://{exporter.address}"
            open_before = httpx.get(f"{base}/-/healthy").status_code
            web_path.write_text(f"basic_auth_users:\n  prom: '{BCRYPT_PW}'\n")
            reloaded = httpx.post(f"{base}/-/reload").status_code
            anonymous = httpx.get(f"{base}/-/healthy").status_code
            with_password = httpx.get(f"{base}/-/healthy", auth=("prom", "pw")).status_code
            web_path.write_text("tls_server_config: {cert_file: server.crt, key_file: server.key}\n")
            tls = httpx.post(f"{base}/-/reload", auth=("prom", "pw"))
            still = httpx.get(f"{base}/-/healthy", auth=("prom", "pw")).status_code
    assert (open_before, reloaded, anonymous, with_password) == (200, 200, 401, 200)
    assert tls.status_code == 500 and "turning TLS on or off needs a restart" in tls.text
    assert still == 200


@pytest.mark.parametrize(
    ("config", "web", "named"),
    [
        ("", "tls_server_config: {cert_file: a, key_file: b, min_version: [TLS12]}\n", "min_version"),
        ("", "tls_server_config: {cert_file: a, key_file: b, client_auth_type: [x]}\n", "client_auth_type"),
        ("", "tls_server_config: {cert_file: 123, key_file: b}\n", "tls_server_config.cert_file"),
        ("", "basic_auth_users: {prom: '$2b$03$" + "x" * 53 + "'}\n", "basic_auth_users.prom"),
        ("api: {base_url: 'http://[::1'}\n", "", "api.base_url"),
    ],
)
def test_a_reload_that_cannot_build_is_refused_whole_by_post_and_by_sighup(tmp_path, config, web, named):
    """Refused, never a 500 "Internal error" or a lost task: the running config stays, the metric says 0."""
    with simulator_process("--static", "2") as sim:
        (env_id, key), *_ = sim["environments"].items()
        good = f"api: {{base_url: '{sim['url']}'}}\nenvironments: [{{id: {env_id}}}]\n"
        (tmp_path / "config.yaml").write_text(good)
        (tmp_path / "web.yml").write_text("")
        flags = ("--config.file", "config.yaml", "--web.config.file", "web.yml")
        with exporter_process(*flags, env={"ANTHROPIC_ENVIRONMENT_KEY": key}, cwd=tmp_path) as (url, log):
            (tmp_path / "config.yaml").write_text(config + f"environments: [{{id: {env_id}}}]\n")
            (tmp_path / "web.yml").write_text(web)
            posted = httpx.post(f"{url}/-/reload", timeout=30)
            os.kill(_pid_listening(log), signal.SIGHUP)
            wait_for("the SIGHUP's refusal", lambda: log.read_text().count("reload refused") == 2)
            after = httpx.get(f"{url}/metrics", timeout=30).text
        text = log.read_text()
    assert posted.status_code == 500 and posted.text.startswith("Reload refused; the running config stays:")
    assert named in posted.text and "Internal error" not in posted.text
    assert value(samples(after), RELOAD_OK) == 0
    assert value(samples(after), "anthropic_work_scrape_success", environment_id=env_id) == 1
    refusals = [line for line in text.splitlines() if "reload refused" in line]
    assert len(refusals) == 2 and all(named in line for line in refusals)
    assert "Task exception was never retrieved" not in text and "Traceback" not in text


def test_loading_a_web_config_hashes_no_password(tmp_path, monkeypatch):
    """A cost-16 hash takes seconds to check: loading (and so reloading) must not run bcrypt at all."""

    def refuse(*args):
        raise AssertionError("bcrypt ran while loading the web config")

    monkeypatch.setattr(bcrypt, "hashpw", refuse)
    monkeypatch.setattr(bcrypt, "checkpw", refuse)
    (tmp_path / "web.yml").write_text(
        "basic_auth_users: {prom: '$2b$16$5rdYXI91QPOFthQdfP4jSerUv2iCnvWhLd/KhtLAdmNXDUKCgnHaq'}\n"
    )
    web = load_web_config(tmp_path / "web.yml")
    assert web.basic_auth is not None


def test_a_flood_of_reloads_costs_two_loads_and_every_one_gets_the_answer_of_a_load_after_it_asked():
    """50 reloads asked for while one loads: they share the next load (which reads the files anew)."""
    config = parse_config(
        "environments: [{id: env_a}]\n", {"ANTHROPIC_ENVIRONMENT_KEY": "sk-env-key-0123456789"}
    )
    loading, release = threading.Event(), threading.Event()
    loads = []

    def load():
        loads.append(len(loads))
        loading.set()
        release.wait(10)  # the first load takes its time
        return config, None

    async def go():
        lasting = Lasting(transport=lambda tls: httpx.AsyncHTTPTransport(verify=tls))
        reloader = Reloader(
            (config, None),
            load,
            lambda c: build(c, lasting, Shard()),
            state=ReloadState(),
            tls=TlsContext(None),
            forget=lasting.forget_all_but,
        )
        await reloader.start()
        first = asyncio.create_task(reloader.reload())
        await asyncio.to_thread(loading.wait, 10)
        flood = [asyncio.create_task(reloader.reload()) for _ in range(50)]
        await asyncio.sleep(0)
        release.set()
        answers = await asyncio.gather(first, *flood)
        await reloader.aclose()
        return answers

    answers = run_virtual(go())
    assert answers == [[]] * 51 and loads == [0, 1]


def test_reloads_leak_nothing_though_what_lives_long_is_frozen_out_of_the_collectors_way(tmp_path):
    """Each reload is followed by a settle (unfreeze, collect, freeze): 30 reloads later, the objects
    alive (frozen or not) are as many as after the first, a replaced generation's cycles included.
    (Were they frozen and never collected, 30 reloads would keep about 4,000 objects more.)"""
    a, b = static_env("env_a", 3, NOW), static_env("env_b", 4, NOW)
    environ = {"KEY_env_a": a.key, "KEY_env_b": b.key}
    path = tmp_path / "config.yaml"
    memory = LongLived()
    with running_simulator(a, b) as (_sim, url):
        write_config(path, url, "env_a", "env_b")
        args = parse_args(["--config.file", str(path)])
        config = load_config(path, environ)
        try:
            with running_exporter(config, load=loader(args, environ)) as exporter:
                exporter.reloader.reloaded = memory.settle

                def alive_after(reloads: int) -> int:
                    for _ in range(reloads):
                        assert exporter.reload() == []
                        assert httpx.get(f"http://{exporter.address}/metrics", timeout=30).status_code == 200
                    memory.settle()
                    return len(gc.get_objects()) + gc.get_freeze_count()

                first = alive_after(5)
                later = alive_after(30)
                frozen = gc.get_freeze_count()
        finally:
            gc.unfreeze()  # the rest of the test run is none of the exporter's
    assert frozen > 0  # what lives long was frozen
    assert later - first < 1000, (first, later)  # 30 generations replaced, none kept

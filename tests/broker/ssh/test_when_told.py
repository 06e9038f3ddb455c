"""SSHBroker.when_told: a cut's steps after its user was told wait for every cut under way."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from broker.ssh import BrokerConfig, SSHBroker, server


def make_broker(tmp_path: Path) -> SSHBroker:
    ident = tmp_path / "id"
    ident.mkdir()
    for name in ("ca.pem", "cert.pem", "key.pem"):  # only looked for: nothing here connects
        (ident / name).write_text("")
    config = BrokerConfig.build("127.0.0.1:0", str(ident), "127.0.0.1:1", str(tmp_path / "data"))
    fake_cp: Any = object()
    return SSHBroker(config, cp=fake_cp)


def test_steps_wait_until_no_cut_is_under_way(tmp_path: Path) -> None:
    async def main() -> list[str]:
        broker = make_broker(tmp_path)
        done: list[str] = []
        broker.when_told(lambda: done.append("alone"))  # no cut under way: at once
        with broker.cutting():
            with broker.cutting():
                broker.when_told(lambda: done.append("first"))
            broker.when_told(lambda: done.append("second"))
            assert done == ["alone"]
        return done

    assert asyncio.run(main()) == ["alone", "first", "second"]


def test_steps_wait_at_most_the_limit(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(server, "TOLD_LIMIT", 0.05)

    async def main() -> list[str]:
        broker = make_broker(tmp_path)
        done: list[str] = []
        with broker.cutting():
            broker.when_told(lambda: done.append("late"))
            await asyncio.sleep(0.2)  # a storm of cuts that does not end
            assert done == ["late"]
        return done

    assert asyncio.run(main()) == ["late"]


def test_many_steps_run_a_batch_per_turn_of_the_loop(tmp_path: Path) -> None:
    async def main() -> list[int]:
        broker = make_broker(tmp_path)
        done: list[int] = []
        with broker.cutting():
            for i in range(server.TOLD_BATCH + 5):
                broker.when_told(lambda i=i: done.append(i))  # type: ignore[misc]
        assert done == list(range(server.TOLD_BATCH))  # the rest after other callbacks
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return done

    assert asyncio.run(main()) == list(range(server.TOLD_BATCH + 5))

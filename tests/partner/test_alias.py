"""`exchange.client`, the partner library's former name, stays importable (deprecated) and is the same library."""

from __future__ import annotations

import importlib
import sys

import pytest

import exchange.partner
import exchange.partner.api


def test_the_old_name_warns_and_gives_the_same_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "exchange.client" or m.startswith("exchange.client.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.warns(DeprecationWarning, match="exchange.partner"):
        old = importlib.import_module("exchange.client")
    assert old.ExchangeClient is exchange.partner.ExchangeClient
    assert old.PartnerKeys is exchange.partner.PartnerKeys
    assert importlib.import_module("exchange.client.api") is exchange.partner.api
    from exchange.client.api import ExchangeClient  # the form existing integrations use

    assert ExchangeClient is exchange.partner.api.ExchangeClient

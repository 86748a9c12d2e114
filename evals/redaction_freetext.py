"""Labelled fintech free text: memos, dispute notes, bureau letters and support chats, deterministic per seed.

Third-party names come from `evals.redaction_names` (hand-written, not the seeder's Faker lists) in every
style people type them: full, first name only, ALL CAPS, lower case, initials ("A. Okafor"), hyphenated and
multi-part, with titles, surname first (bureau style) and next to other PII. Hard negatives carry no personal
data at all but are full of capitalised non-names: merchants, banks, places, products, sentence openers,
currencies, case ids and Luhn-valid order numbers that are not cards.

Obfuscated contact details are positives: "ama [at] example [dot] com", phone digits written as words.
"""

from __future__ import annotations

import random
import re

from evals.metrics import Span
from evals.redaction_corpus import Doc, Generator
from evals.redaction_names import (
    BANKS,
    CAPITALISED_WORDS,
    COMPOUND_LAST,
    FIRST,
    LAST,
    MERCHANTS,
    PLACES,
    PRODUCTS,
    TITLES,
)

REGIONS = tuple(FIRST)

MEMOS: tuple[str, ...] = (
    "paid to {PERSON:full} for the {PRODUCT}",
    "Rent to my landlord {PERSON:full}, {PLACE} flat",
    "School fees for {PERSON:first} at {PLACE} Grammar School",
    "{PERSON:first}'s hospital bill",
    "send to {PERSON:lower} via {BANK}",
    "FOR {PERSON:caps} - BURIAL CONTRIBUTION",
    "transfer to {PERSON:initial}, {BANK}",
    "Gift for {PERSON:first} and {PERSON:first}",
    "{MERCHANT} order, collected by {PERSON:full}",
    "my agent {PERSON:full} in {PLACE} will pick it up",
    "contribution from {PERSON:hyphen} for the wedding",
    "upkeep for {PERSON:multi}",
    "Beneficiary {PERSON:full} - {BANK} - school fees",
    "balance for the car, {PERSON:title} said ok",
    "loan repayment to {PERSON:first_initial}",
    "from {PERSON:first}: happy birthday!",
    "pls credit {PERSON:lower} today, {PERSON:first} is waiting",
)
DISPUTE_NOTES: tuple[str, ...] = (
    "Customer says the {AMOUNT} transfer to {PERSON:full} at {BANK} never arrived. Case {CASE}.",
    "Recipient {PERSON:title} confirmed receipt on {DATE}; closing {CASE}.",
    "{PERSON:full} called from {PLACE} disputing a {MERCHANT} charge of {AMOUNT}.",
    "Chargeback raised with {BANK}. Beneficiary name on their side: {PERSON:caps}.",
    "Spoke with {PERSON:first} (the customer's sister) who says the money went to {PERSON:full} instead.",
    "Customer's relative {PERSON:hyphen} sent {AMOUNT} by mistake; reversal requested {DATE}.",
    "Payee {PERSON:multi} is not the intended recipient. Escalated to {BANK} ops.",
    "Agent note: {PERSON:title} (guarantor) phoned, number {PHONE:ng_local}, wants the statement.",
    "Customer paid {PERSON:surname_first} for a {PRODUCT} that never arrived; {MERCHANT} not involved.",
    "Name on the receiving account shows {PERSON:caps}, not {PERSON:caps}. Holding funds.",
    "Landlord {PERSON:full} denies receiving rent for {DATE}. Evidence requested.",
    "Refund approved by {PERSON:initial} in ops; customer informed {DATE}.",
)
LETTERS: tuple[str, ...] = (
    "Dear {PERSON:title},\n\nWe have reviewed the account opened with {BANK} in {PLACE} and reported on {DATE}. "
    "The entry has been corrected.\n\nYours faithfully,\n{PERSON:full}\nDispute Resolution, {BUREAU}",
    "RE: {PERSON:surname_first} - DISPUTE REFERENCE {CASE}\n\nThe guarantor listed, {PERSON:title}, is not known "
    "to the consumer and has been removed.",
    "Account holder: {PERSON:caps}\nJoint holder: {PERSON:caps}\nStatus: closed, paid in full.",
    "{BUREAU} has received a notice of correction from {PERSON:full} of {PLACE} concerning a {BANK} loan.",
    "This letter confirms that {PERSON:multi} (BVN {BVN}) has no outstanding balance with {BANK}.",
    "Attention: {PERSON:initial}\nSubject: Data correction request {CASE}\nWe will respond by {DATE}.",
)
CHATS: tuple[str, ...] = (
    "agent: hi, how can I help?\ncustomer: i sent money to {PERSON:lower} yesterday and it is still pending",
    "customer: my brother {PERSON:first} never got the {AMOUNT}\nagent: Thanks. Checking with {BANK} now.",
    "customer: pls reverse it, the name that showed was {PERSON:full} not {PERSON:full}",
    "agent: Hello {PERSON:first}! Your refund from {MERCHANT} is on the way.",
    "customer: can u send the receipt to {EMAIL:obfuscated}\nagent: Sure.",
    "customer: call me on {PHONE:words} after 5",
    "customer: my landlord {PERSON:full} wants proof of payment, his number is {PHONE:ng_local}",
    "customer: it's for {PERSON:caps} in {PLACE}\nagent: Noted, {PERSON:first}.",
    "customer: email {PERSON:first} at {EMAIL:obfuscated} with the details",
    "customer: Whatsapp me {PHONE:words}",
    "customer: hi im {PERSON:lower}, my card was charged twice by {MERCHANT}",
    "agent: Mrs {PERSON:last} will call you back about {CASE}.",
)
NEGATIVES: tuple[str, ...] = (
    "{CAPWORD}, the {MERCHANT} refund of {AMOUNT} posted on {DATE}.",
    "Card payment at {MERCHANT} {PLACE} declined; {BANK} says insufficient funds.",
    "Transfer via {BANK} to {PLACE} delayed by the corridor partner. Case {CASE}.",
    "{CAPWORD}: customer bought a {PRODUCT} from {MERCHANT} on {DATE}.",
    "Order number {LUHN_ORDER} from {MERCHANT} was delivered to the {PLACE} branch.",
    "Reference {LUHN_ORDER} is the tracking number for the {PRODUCT} shipment.",
    "Invoice no. {LUHN_ORDER}, {AMOUNT} due {DATE}.",
    "Escalated to {BANK}; {CAPWORD} review by {DATE}.",
    "{MERCHANT} in {PLACE} and {MERCHANT} in {PLACE} both charged twice.",
    "Mr Biggs {PLACE} and Mama Cass {PLACE} refunds were settled through {BANK}.",
    "{CAPWORD}. {BANK} confirmed the {CURRENCY} settlement for {CASE} on {DATE}.",
    "Moved {AMOUNT} from Savings to Gold Savings; {PRODUCT} upgrade pending.",
    "{BUREAU} report pulled {DATE}; {BANK} and {BANK} tradelines current.",
    "{CAPWORD} - {MERCHANT} subscription renewed, next charge {DATE} in {CURRENCY}.",
    "Customer in {PLACE} asked why {BANK} shows {AMOUNT}. {CAPWORD} explained the FX spread.",
    "Loyalty order {LUHN_ORDER} (not a card) redeemed at {MERCHANT}.",
)
BUREAUS = ("CRC Credit Bureau", "FirstCentral", "Equifax", "Experian", "TransUnion", "XDS Data", "Metropol")
CURRENCIES = ("NGN", "GHS", "KES", "USD", "GBP", "USDC")
_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_PLACEHOLDER = re.compile(r"\{([A-Z][A-Z_]*)(?::(\w+))?\}")
# Values whose spans are labelled (everything else is filler with no personal data).
_LABELLED = {"PERSON", "EMAIL", "PHONE", "BVN"}


class FreeTextGenerator(Generator):
    """Fills the free-text templates; structured values come from the base corpus generator."""

    def name(self, style: str) -> str:
        r = self.rng
        region = r.choice(REGIONS)
        first, last = r.choice(FIRST[region]), r.choice(LAST[region])
        if r.random() < 0.1:
            last = r.choice(LAST[r.choice(REGIONS)])
        if style == "first":
            return first
        if style == "last":
            return last
        if style == "caps":
            return f"{first} {last}".upper()
        if style == "lower":
            return f"{first} {last}".lower()
        if style == "initial":
            return f"{first[0]}. {last}"
        if style == "first_initial":
            return f"{first} {last[0]}."
        if style == "hyphen":
            return f"{first} {r.choice(COMPOUND_LAST)}"
        if style == "multi":
            return f"{first} {r.choice(FIRST[region])} {last}"
        if style == "title":
            title = r.choice(TITLES)
            return f"{title} {last}" if r.random() < 0.5 else f"{title} {first} {last}"
        if style == "surname_first":
            return f"{last.upper()}, {first}"
        return f"{first} {last}"

    def filler(self, kind: str) -> str:
        r = self.rng
        if kind == "MERCHANT":
            return r.choice(MERCHANTS)
        if kind == "BANK":
            return r.choice(BANKS)
        if kind == "PLACE":
            return r.choice(PLACES)
        if kind == "PRODUCT":
            return r.choice(PRODUCTS)
        if kind == "CAPWORD":
            return r.choice(CAPITALISED_WORDS)
        if kind == "BUREAU":
            return r.choice(BUREAUS)
        if kind == "CURRENCY":
            return r.choice(CURRENCIES)
        if kind == "CASE":
            return r.choice(("CASE-", "DSP-", "INC-", "KRD-")) + str(r.randint(10_000, 999_999))
        if kind == "LUHN_ORDER":
            return _luhn_number(r)
        return self.negative_value(kind)

    def contact(self, kind: str, variant: str | None) -> str:
        r = self.rng
        if kind == "EMAIL" and variant == "obfuscated":
            local = r.choice(FIRST[r.choice(REGIONS)]).lower() + r.choice(("", ".", "_")) + \
                r.choice(LAST[r.choice(REGIONS)]).lower().replace("'", "")
            domain, tld = r.choice((("gmail", "com"), ("yahoo", "co.uk"), ("outlook", "com"), ("kredete", "ng")))
            at, dot = r.choice(((" [at] ", " [dot] "), (" at ", " dot "), ("(at)", "(dot)"), (" AT ", " DOT "),
                                ("@", " dot ")))
            return f"{local}{at}{domain}{dot}{dot.join(tld.split('.'))}"
        if kind == "PHONE" and variant == "words":
            digits = self._phone(r.choice(("ng_local", "ke_local", "gb_local"))).replace(" ", "")
            words = [_WORDS[int(d)] for d in digits]
            if r.random() < 0.3:
                words = [w if r.random() < 0.6 else d for w, d in zip(words, digits, strict=True)]
            return " ".join(words)
        return self.value(kind, variant)

    def fill_text(self, template: str, negative: bool = False) -> Doc:
        pieces: list[str] = []
        spans: list[Span] = []
        length = pos = 0
        for m in _PLACEHOLDER.finditer(template):
            lit = template[pos:m.start()]
            pieces.append(lit)
            length += len(lit)
            kind, variant = m.group(1), m.group(2)
            if kind == "PERSON":
                val = self.name(variant or "full")
            elif kind in _LABELLED:
                val = self.contact(kind, variant)
            else:
                val = self.filler(kind)
            if kind in _LABELLED:
                start = length
                if kind == "PERSON" and variant == "title":
                    start += val.index(" ") + 1  # the title itself is not personal data
                spans.append(Span(kind, start, length + len(val)))
            pieces.append(val)
            length += len(val)
            pos = m.end()
        pieces.append(template[pos:])
        return Doc("".join(pieces), spans, template, negative)


def _luhn_number(r: random.Random) -> str:
    """A 16-digit, Luhn-valid number with a card-like prefix: what a naive card detector masks."""
    body = r.choice(("4", "5", "6")) + "".join(r.choice("0123456789") for _ in range(14))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return body + str((10 - total % 10) % 10)


GENRES = {"memo": MEMOS, "dispute_note": DISPUTE_NOTES, "bureau_letter": LETTERS, "support_chat": CHATS}


def build_freetext(seed: int = 20260513, per_template: int = 14, negatives_per_template: int = 16
                   ) -> tuple[list[Doc], list[Doc]]:
    """(documents with labelled personal data, PII-free hard negatives), each tagged with its genre."""
    g = FreeTextGenerator(seed)
    positives: list[Doc] = []
    for genre, templates in GENRES.items():
        for t in templates:
            for _ in range(per_template):
                d = g.fill_text(t)
                d.template = f"{genre}: {t}"
                positives.append(d)
    negatives = []
    for t in NEGATIVES:
        for _ in range(negatives_per_template):
            d = g.fill_text(t, negative=True)
            d.template = f"negative: {t}"
            negatives.append(d)
    return positives, negatives

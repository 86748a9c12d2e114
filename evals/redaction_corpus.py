"""A labelled PII corpus, generated deterministically (same seed, same corpus).

Person names come from the hand-written lists in `evals.redaction_names` (the seeder uses Faker's);
identifiers are made by hand with their real
structure (BVN 22 + 9 digits, NIN 11 digits, Luhn-valid cards with real IIN prefixes, GB/DE IBANs with
valid check digits from Faker, NG/KE/GB/US phone numbers checked with `phonenumbers`, Base58Check BTC and
Tron addresses, ETH addresses) and placed in sentence templates written the way support tickets, memos
and credit-report notes are. Every template records the exact span and kind of each value.

Evasive spellings a red team found getting through are positives too: cards and phones with dots, slashes,
underscores, no-break/thin/zero-width spaces or en-dashes between groups, 00-prefixed numbers, spaced BVN/NIN,
dotted SSNs, lowercase or dashed IBANs, Unicode and IDN emails, a full-width '＠'.

Negative documents carry no personal data at all: amounts, dates, KRD- references, UUIDs, corridors, FX
rates, times, counts, and look-alikes of the evasive forms (four-part versions, slashed and dotted dates,
slashed/underscored references). Any finding on them is a false positive.
"""

from __future__ import annotations

import hashlib
import random
import re
import uuid
from dataclasses import dataclass, field

from evals.metrics import Span

LOCALES = ("en_NG", "en_KE", "en_GB", "en_US")

# {KIND} is replaced by a generated value of that kind and labelled; {KIND:name} picks a format variant.
TEMPLATES: tuple[str, ...] = (
    "Customer BVN: {BVN}. Please confirm before linking the account.",
    "My bank verification number is {BVN} and my NIN is {NIN}.",
    "NIN {NIN} was rejected by the verification partner.",
    "National identity number: {NIN}",
    "Card {CARD_NUMBER:grouped} was declined at checkout.",
    "Please refund to my visa card {CARD_NUMBER:bare}, thanks.",
    "debit card number {CARD_NUMBER:grouped} expired last month",
    "Send it to IBAN {IBAN:spaced} (Barclays).",
    "Beneficiary IBAN: {IBAN:compact}",
    "Call me on {PHONE:ng_intl} after 6pm.",
    "Recipient phone {PHONE:ng_local}, MTN line.",
    "M-Pesa number {PHONE:ke_intl} is registered to my sister.",
    "my mobile is {PHONE:ke_local}",
    "UK mobile {PHONE:gb_intl}; landline not available.",
    "Reach me at {PHONE:gb_local} or by email at {EMAIL}.",
    "US cell: {PHONE:us}",
    "Contact {EMAIL} for the statement.",
    "Withdraw the USDT to {CRYPTO_ADDRESS:tron} on TRC-20.",
    "Deposit came from {CRYPTO_ADDRESS:btc}.",
    "ERC-20 wallet {CRYPTO_ADDRESS:eth} belongs to the customer.",
    "SSN {SSN} listed on the bureau file is not mine.",
    "Date of birth: {DATE_OF_BIRTH:iso}",
    "She was born on {DATE_OF_BIRTH:long}.",
    "DOB {DATE_OF_BIRTH:slash}, please update the file.",
    "Passport number {PASSPORT} expires next year.",
    "Account number {BANK_ACCOUNT} at GTBank, name on account as shown.",
    "Login from IP address {IP_ADDRESS} flagged by fraud.",
    "Beneficiary: {PERSON}",
    "Name: {PERSON}, relationship: brother.",
    "Mrs {PERSON} called about the delayed payout.",
    "Dr. {PERSON} asked for a copy of the dispute letter.",
    "I sent money to {PERSON} yesterday and it has not arrived.",
    "{PERSON} says the transfer never reached the wallet.",
    "Please ask {PERSON} to upload a clearer passport photo.",
    "Home address: {ADDRESS}.",
    "Ship the card to {ADDRESS}.",
    "Mr {PERSON} lives at {ADDRESS} and his phone is {PHONE:ng_local}.",
    "Account holder {PERSON}, BVN {BVN}, mobile {PHONE:ng_intl}, email {EMAIL}.",
    "Card ending... actually the full number is {CARD_NUMBER:bare}; DOB {DATE_OF_BIRTH:iso}.",
    # Evasive spellings.
    "Card {CARD_NUMBER:odd_sep} was declined at checkout.",
    "pls charge {CARD_NUMBER:odd_sep} again",
    "Call me on {PHONE:odd_sep} after 6pm.",
    "My BVN is {BVN:grouped}, please link it.",
    "NIN: {NIN:grouped}",
    "SSN {SSN:dotted} listed on the bureau file is not mine.",
    "Send it to {IBAN:lower} (Barclays).",
    "Beneficiary IBAN {IBAN:dashed}",
    "Contact {EMAIL:unicode} for the statement.",
)

NEGATIVE_TEMPLATES: tuple[str, ...] = (
    "Transfer {REF} of {AMOUNT} completed on {DATE} at {TIME} UTC.",
    "Payout {UUID} for corridor {CORRIDOR} is pending compliance review.",
    "FX order {REF}: 1 USD = {RATE} NGN, margin 0.85%, fee {AMOUNT}.",
    "Refund of {AMOUNT} issued on {DATE}; original transaction {REF}.",
    "Batch {INT} settled {INT} transactions worth {AMOUNT} in {DURATION}.",
    "Corridor {CORRIDOR} volume on {DATE}: {INT} transfers, {AMOUNT} total.",
    "Ledger posting {UUID} balanced: debit {AMOUNT}, credit {AMOUNT}.",
    "Quote locked for 30 minutes at {RATE}; expires {DATE} {TIME}.",
    "Dispute case {UUID} moved to under_review on {DATE}.",
    "Score rose from {SCORE} to {SCORE} between {DATE} and {DATE}.",
    "Invoice INV-{INT} due {DATE}, amount {AMOUNT}, reference {REF}.",
    "Utilisation dropped to {PCT}% after the {AMOUNT} payment on {DATE}.",
    "Wallet balance {AMOUNT} as of {DATE} {TIME}; {INT} pending holds.",
    "Webhook retry {INT}/5 for event {UUID} at {TIME}.",
    "Statement period {DATE} to {DATE}: {INT} transfers, fees {AMOUNT}.",
    # Look-alikes of the evasive forms.
    "App version {VERSION4} went out on {SLASH_DATE} at {TIME}.",
    "Ticket {SLASH_REF} opened {DOT_DATE}; export batch_{UNDERSCORE_DATE}_{INT}.csv attached.",
    "Settlement window {DOT_DATE} {TIME}\u2013{TIME} closed with {INT} items.",
    "Build {BUILD} promoted; {INT}\u00a0000 transfers replayed.",
)

# Business numbers shaped like identifiers: an 11-digit tracking number has the shape of a NIN, a 10-digit Unix
# time or a 16-digit order number can look like a phone or a card. Reported apart from the plain negatives.
HARD_NEGATIVE_TEMPLATES: tuple[str, ...] = (
    "Parcel tracking number {TRACKING} left the depot.",
    "Event at unix time {EPOCH} replayed by the worker.",
    "Order number {ORDER_NO} was fulfilled.",
    "Version {SEMVER} deployed; build {INT}.",
    "Sort the {INT} rows by amount, then export to CSV.",
    "Order {ORDER_GROUPED} archived.",
)

_CURRENCIES = ("NGN", "USD", "GBP", "KES", "GHS", "USDC")
_CORRIDORS = ("US-NG", "GB-GH", "US-KE", "GB-NG", "US-GH")
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_PLACEHOLDER = re.compile(r"\{([A-Z][A-Z0-9_]*)(?::(\w+))?\}")


@dataclass
class Doc:
    text: str
    spans: list[Span] = field(default_factory=list)
    template: str = ""
    negative: bool = False


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return body + str((10 - total % 10) % 10)


def _base58check(payload: bytes) -> str:
    data = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


class Generator:
    def __init__(self, seed: int) -> None:
        from faker import Faker

        self.rng = random.Random(seed)
        self.fakers = {loc: Faker(loc) for loc in (*LOCALES, "de_DE")}
        for i, f in enumerate(self.fakers.values()):
            f.seed_instance(seed + i)

    def _faker(self, locale: str | None = None):
        return self.fakers[locale or self.rng.choice(LOCALES)]

    def _phone(self, variant: str) -> str:
        import phonenumbers

        r = self.rng
        for _ in range(200):
            d = lambda n: "".join(r.choice("0123456789") for _ in range(n))  # noqa: E731
            ng = r.choice(("803", "806", "813", "703", "906", "805", "802", "708"))
            ke = r.choice(("712", "722", "701", "733", "790", "115"))
            gb = r.choice(("7700", "7911", "7400", "7825", "7588"))
            s = {
                "ng_intl": f"+234 {ng} {d(3)} {d(4)}", "ng_local": f"0{ng} {d(3)} {d(4)}",
                "ke_intl": f"+254 {ke} {d(3)} {d(3)}", "ke_local": f"0{ke} {d(6)}",
                "gb_intl": f"+44 {gb} {d(6)}", "gb_local": f"0{gb} {d(6)}",
                "us": f"({r.choice(('212', '415', '646', '718', '312', '617'))}) {r.randint(2, 9)}{d(2)}-{d(4)}",
            }[variant]
            region = {"ng": "NG", "ke": "KE", "gb": "GB", "us": "US"}[variant[:2]]
            try:
                if phonenumbers.is_valid_number(phonenumbers.parse(s, region)):
                    return s
            except phonenumbers.NumberParseException:
                continue
        raise RuntimeError(f"could not make a valid {variant} phone number")

    def value(self, kind: str, variant: str | None) -> str:
        r = self.rng
        digits = lambda n: "".join(r.choice("0123456789") for _ in range(n))  # noqa: E731
        if kind == "BVN":
            bvn = "22" + digits(9)
            return self._regroup(bvn, (3, 4, 4)) if variant == "grouped" else bvn
        if kind == "NIN":
            nin = str(r.randint(1, 9)) + digits(10)
            return self._regroup(nin, r.choice(((3, 4, 4), (4, 3, 4)))) if variant == "grouped" else nin
        if kind == "CARD_NUMBER":
            prefix, length = r.choice((("4", 16), ("51", 16), ("53", 16), ("2221", 16), ("37", 15), ("4", 16)))
            card = _luhn_complete(prefix, length, r)
            sizes = (4, 6, 5) if length == 15 else (4, 4, 4, 4)
            if variant == "grouped":
                return self._regroup(card, sizes, " ")
            if variant == "odd_sep":
                return self._regroup(card, sizes)
            return card
        if kind == "IBAN":
            iban = self.fakers["en_GB"].iban() if r.random() < 0.6 else self.fakers["de_DE"].iban()
            if variant == "lower":
                return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4)).lower()
            if variant == "dashed":
                return "-".join(iban[i:i + 4] for i in range(0, len(iban), 4))
            return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4)) if variant == "spaced" else iban
        if kind == "PHONE":
            if variant == "odd_sep":
                local = self._phone("ng_local").replace(" ", "")
                if r.random() < 0.3:
                    return self._regroup("00234" + local[1:], (5, 3, 3, 4), r.choice((" ", "-", "\u00a0")))
                return self._regroup(local, (4, 3, 4))
            return self._phone(variant or "ng_intl")
        if kind == "EMAIL":
            if variant == "unicode":
                local = r.choice(("jöhn", "zoë.okafor", "adébáyọ̀", "chidi", "wanjirũ", "ama.mensah", "élodie"))
                domain = r.choice(("bücher.de", "exämple.com", "kredete.ng", "mail.com.gh", "例子.广告"))
                at = r.choice(("@", "@", "\uff20"))
                return f"{local}{r.randint(1, 99) if r.random() < 0.5 else ''}{at}{domain}"
            return self._faker().email()
        if kind == "CRYPTO_ADDRESS":
            if variant == "eth":
                return "0x" + "".join(r.choice("0123456789abcdef") for _ in range(40))
            version = b"\x41" if variant == "tron" else b"\x00"
            return _base58check(version + bytes(r.getrandbits(8) for _ in range(20)))
        if kind == "SSN":
            ssn = self.fakers["en_US"].ssn()
            return ssn.replace("-", ".") if variant == "dotted" else ssn
        if kind == "DATE_OF_BIRTH":
            y, m, d = r.randint(1950, 2004), r.randint(1, 12), r.randint(1, 28)
            if variant == "long":
                months = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
                          "October", "November", "December")
                return f"{d} {months[m - 1]} {y}"
            if variant == "slash":
                return f"{d:02d}/{m:02d}/{y}"
            return f"{y}-{m:02d}-{d:02d}"
        if kind == "PASSPORT":
            return r.choice("ABCDEFGHJKLMNPRSTUVWXYZ") + digits(8)
        if kind == "BANK_ACCOUNT":
            return "0" + digits(9)
        if kind == "IP_ADDRESS":
            return self._faker("en_US").ipv4_public()
        if kind == "PERSON":
            # Hand-written lists, not the seeder's Faker lists (evals.redaction_names).
            from evals.redaction_names import FIRST, LAST

            region = r.choice(tuple(FIRST))
            return f"{r.choice(FIRST[region])} {r.choice(LAST[region])}"
        if kind == "ADDRESS":
            style = r.choice(("ng", "gb", "us"))
            if style == "ng":
                street = r.choice(("Adeola Odeku Street", "Allen Avenue", "Awolowo Road", "Herbert Macaulay Way",
                                   "Ozumba Mbadiwe Avenue"))
                city = r.choice(("Victoria Island, Lagos", "Ikeja, Lagos", "Wuse, Abuja", "Ikoyi, Lagos"))
                return f"{r.randint(1, 250)} {street}, {city}"
            f = self.fakers["en_GB" if style == "gb" else "en_US"]
            return f"{f.building_number()} {f.street_name()}, {f.city()}"
        raise ValueError(kind)

    # Separators people (and copy-paste) put between digit groups that the engine used to miss.
    ODD_SEPARATORS = (".", "/", "_", "  ", " - ", "\u00a0", "\u2009", "\u202f", "\u2013", "\u200b")

    def _regroup(self, digits: str, sizes: tuple[int, ...], sep: str | None = None) -> str:
        sep = sep if sep is not None else self.rng.choice(self.ODD_SEPARATORS)
        out, i = [], 0
        for n in sizes:
            out.append(digits[i:i + n])
            i += n
        return sep.join(out)

    def negative_value(self, kind: str) -> str:
        r = self.rng
        if kind == "REF":
            return "KRD-" + "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(12))
        if kind == "AMOUNT":
            cur = r.choice(_CURRENCIES)
            amt = f"{r.randint(1, 2_000_000):,}.{r.randint(0, 99):02d}"
            return r.choice((f"{cur} {amt}", f"{amt} {cur}", f"${amt}" if cur == "USD" else f"{cur} {amt}"))
        if kind == "DATE":
            y, m, d = r.randint(2023, 2026), r.randint(1, 12), r.randint(1, 28)
            return r.choice((f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}"))
        if kind == "TIME":
            return f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}"
        if kind == "UUID":
            return str(uuid.UUID(int=r.getrandbits(128)))
        if kind == "CORRIDOR":
            return r.choice(_CORRIDORS)
        if kind == "RATE":
            return f"{r.uniform(100, 1700):,.2f}"
        if kind == "INT":
            return str(r.randint(1, 99_999))
        if kind == "DURATION":
            return f"{r.randint(1, 59)} minutes"
        if kind == "SCORE":
            return str(r.randint(300, 850))
        if kind == "TRACKING":
            return str(r.randint(1, 9)) + "".join(r.choice("0123456789") for _ in range(10))
        if kind == "EPOCH":
            return str(r.randint(1_600_000_000, 1_800_000_000))
        if kind == "ORDER_NO":
            return str(r.randint(10**15, 10**16 - 1))
        if kind == "SEMVER":
            return f"{r.randint(0, 9)}.{r.randint(0, 30)}.{r.randint(0, 99)}"
        if kind == "PCT":
            return str(r.randint(1, 99))
        y, m, d = r.randint(2023, 2026), r.randint(1, 12), r.randint(1, 28)
        if kind == "VERSION4":
            return ".".join(str(r.randint(0, 12)) for _ in range(4))
        if kind == "SLASH_DATE":
            return r.choice((f"{y}/{m:02d}/{d:02d}", f"{d:02d}/{m:02d}/{y}"))
        if kind == "DOT_DATE":
            return f"{d:02d}.{m:02d}.{y}"
        if kind == "UNDERSCORE_DATE":
            return f"{y}_{m:02d}_{d:02d}"
        if kind == "SLASH_REF":
            return f"KRD/{y}/{m:02d}/{r.randint(1, 999_999):06d}"
        if kind == "BUILD":
            return f"{y}.{m:02d}.{d:02d}.{r.randint(1, 9999)}"
        if kind == "ORDER_GROUPED":
            return self._regroup(str(r.randint(10**15, 10**16 - 1)), (4, 4, 4, 4), r.choice((".", "/", "-", " ")))
        raise ValueError(kind)

    def fill(self, template: str, negative: bool = False) -> Doc:
        pieces: list[str] = []
        spans: list[Span] = []
        pos = 0
        length = 0
        for m in _PLACEHOLDER.finditer(template):
            lit = template[pos:m.start()]
            pieces.append(lit)
            length += len(lit)
            kind, variant = m.group(1), m.group(2)
            val = self.negative_value(kind) if negative else self.value(kind, variant)
            if not negative:
                spans.append(Span(kind, length, length + len(val)))
            pieces.append(val)
            length += len(val)
            pos = m.end()
        pieces.append(template[pos:])
        return Doc("".join(pieces), spans, template, negative)


def build_corpus(seed: int = 20260101, per_template: int = 12,
                 negatives: int = 300) -> tuple[list[Doc], list[Doc], list[Doc]]:
    """(labelled documents with PII, PII-free business documents, hard PII-free documents)."""
    g = Generator(seed)
    positives = [g.fill(t) for t in TEMPLATES for _ in range(per_template)]
    neg = [g.fill(NEGATIVE_TEMPLATES[i % len(NEGATIVE_TEMPLATES)], negative=True) for i in range(negatives)]
    hard = [g.fill(t, negative=True) for t in HARD_NEGATIVE_TEMPLATES for _ in range(20)]
    return positives, neg, hard

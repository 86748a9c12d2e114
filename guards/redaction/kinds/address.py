"""ADDRESS: street addresses (house number + words + street suffix + locality), P.O. boxes, plots and
GhanaPostGPS digital addresses.

Patterns whose first character is a plain class skip the leading look-behind and use :func:`token_matches`
instead, so the regex engine can jump between candidate first characters (several times faster).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..context import token_matches
from ..spec import Candidate, KindSpec

# Latin letters with diacritics count as letters ("Adébáyọ̀", "Zoë Müller"): an ASCII-only class would stop
# the name at the first accent and leave the rest of it in the output. Combining marks may follow any
# letter (Yoruba tone marks over dotted vowels have no precomposed form).
_LATIN = [chr(c) for c in (*range(0xC0, 0x250), *range(0x1E00, 0x1F00))]
_MK = "\u0300-\u036f"
_UP = "A-Z" + "".join(c for c in _LATIN if c.isupper())
_LO = "a-z" + "".join(c for c in _LATIN if c.islower()) + _MK
_CAP = rf"[{_UP}][{_MK}]*"
_WORD = rf"{_CAP}[\w'’{_MK}-]*\.?"
_SUFFIX = (
    r"(?:Street|St|Road|Rd|Avenue|Ave|Close|Cl|Crescent|Cres|Way|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|"
    r"Place|Pl|Highway|Hwy|Expressway|Estate|Layout|Terrace|Gardens|Square|Sq|Parkway|Pkwy|Circle|Cir|"
    r"Spur|Row|Walk|Mews|Grove|Hill|Park|View|Rise|Junction)\.?"
)
# ", Victoria Island, Lagos" / ", Springfield, IL 62704" / ", London SW1A 1AA" — comma required so we do
# not run on into the next sentence.
_TAIL = (
    rf"(?:,[ \t]*{_CAP}[\w'’{_MK}-]*(?:[ \t]+{_CAP}[\w'’{_MK}-]*){{0,2}}){{0,4}}"
    r"(?:,?[ \t]+(?:[A-Z]{1,2}\d[A-Z\d]?[ \t]?\d[A-Z]{2}|\d{5}(?:-\d{4})?)(?!\w))?"
)
_HOUSE = r"(?:(?i:no\.?|plot|block|blk|flat|house|suite)[ \t]*)?\d{1,5}[A-Za-z]?(?:[ \t]*[/-][ \t]*\d{1,5}[A-Za-z]?)?,?"

_STREET = re.compile(rf"(?<!\w){_HOUSE}[ \t]+(?:{_WORD}[ \t]+){{0,4}}{_SUFFIX}(?!\w){_TAIL}")
# The rest of the USPS street suffixes (what US/GB address generators and forms use: "30030 Pamela Forks",
# "92979 Ortiz Harbor"). These words are also ordinary nouns, so at least one capitalised word must stand
# between the house number and the suffix.
_US_SUFFIX = (
    r"(?:Alley|Branch|Bridge|Brook|Brooks|Burg|Bypass|Camp|Canyon|Cape|Causeway|Center|Centre|Cliff|Club|"
    r"Common|Corner|Corners|Course|Cove|Creek|Crest|Crossing|Crossroad|Curve|Dale|Dam|Divide|Estates|"
    r"Extension|Falls|Ferry|Field|Fields|Flat|Flats|Ford|Fords|Forest|Forge|Fork|Forks|Fort|Freeway|Garden|"
    r"Gateway|Glen|Glens|Green|Greens|Harbor|Harbors|Haven|Heights|Hills|Hollow|Inlet|Island|Islands|Isle|"
    r"Junctions|Key|Keys|Knoll|Knolls|Lake|Lakes|Landing|Light|Lights|Loaf|Lock|Locks|Lodge|Loop|Mall|Manor|"
    r"Manors|Meadow|Meadows|Mill|Mills|Mission|Motorway|Mount|Mountain|Mountains|Neck|Orchard|Oval|Overpass|"
    r"Parks|Pass|Passage|Path|Pike|Pine|Pines|Plain|Plains|Plaza|Point|Points|Port|Ports|Prairie|Radial|"
    r"Ramp|Ranch|Rapid|Rapids|Rest|Ridge|Ridges|River|Route|Rue|Run|Shoal|Shoals|Shore|Shores|Skyway|Spring|"
    r"Springs|Squares|Station|Stravenue|Stream|Streets|Summit|Throughway|Trace|Track|Trafficway|Trail|"
    r"Trailer|Tunnel|Turnpike|Underpass|Union|Unions|Valley|Valleys|Via|Viaduct|Views|Village|Villages|"
    r"Ville|Vista|Wall|Ways|Well|Wells)"
)
_STREET_US = re.compile(rf"(?<!\w)\d{{1,6}}[ \t]+(?:{_WORD}[ \t]+){{1,3}}{_US_SUFFIX}(?!\w){_TAIL}")
_PO_BOX = re.compile(
    r"(?i:p\.?[ \t]?o\.?[ \t]*box|post[ \t]+office[ \t]+box|private[ \t]+(?:mail[ \t]+)?bag|pmb)"
    rf"[ \t]*\d{{1,6}}(?:[ \t]*-[ \t]*\d{{5}})?(?!\w){_TAIL}"
)
_PLOT = re.compile(
    r"(?i:plot)[ \t]+(?i:no\.?[ \t]*)?\d{1,5}[A-Za-z]?"
    rf"(?:,?[ \t]*(?i:block)[ \t]+\w{{1,5}})?(?!\w){_TAIL}"
)
# GhanaPostGPS digital address, e.g. GA-183-8164.
_GH_DIGITAL = re.compile(r"[A-Z](?<!\w[A-Z])[A-Z]-\d{3,4}-\d{4}(?!\w)")


def _strip_trailing(text: str, s: int, e: int) -> int:
    while e > s and text[e - 1] in " \t,":
        e -= 1
    return e


def find_addresses(text: str) -> Iterator[Candidate]:
    """Street addresses (number + words + suffix + locality), P.O. boxes, plots, Ghana digital addresses."""
    for pattern, name, score in (
        (_STREET, "address_street", 0.65),
        (_STREET_US, "address_street_us", 0.6),
        (_PO_BOX, "address_po_box", 0.7),
        (_PLOT, "address_plot", 0.6),
        (_GH_DIGITAL, "address_gh_digital", 0.7),
    ):
        for m in token_matches(pattern, text):
            e = _strip_trailing(text, m.start(), m.end())
            yield Candidate("ADDRESS", m.start(), e, score, name)


SPEC = KindSpec(
    "ADDRESS",
    recognizers=(find_addresses,),
    field_hints=("address", "street", "street_address", "address_line1", "address_line_1", "address_line2",
                 "address_line_2", "home_address", "residential_address", "postal_address", "mailing_address",
                 "billing_address"),
)

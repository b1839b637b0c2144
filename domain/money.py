"""Money as integer minor units of an ISO 4217 currency.

Amounts travel as signed decimal strings ("12.34", "-0.5") and are parsed
exactly: no float ever touches an amount, and a string with more decimals than
the currency's exponent is rejected rather than rounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from domain.errors import AmountOutOfRange, AmountPrecisionExceeded, InvalidAmount, UnknownCurrency
from domain.text import quoted

# Exponent (number of minor-unit digits) of every active ISO 4217 currency.
# Most have 2; the exceptions are listed explicitly so a review can check them.
_EXPONENT_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENT_4 = "CLF UYW"
_EXPONENT_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD "
    "BTN BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP "
    "ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR "
    "JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU "
    "MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR "
    "RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS "
    "TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG"
)

CURRENCY_EXPONENTS: dict[str, int] = {
    **{code: 2 for code in _EXPONENT_2.split()},
    **{code: 0 for code in _EXPONENT_0.split()},
    **{code: 3 for code in _EXPONENT_3.split()},
    **{code: 4 for code in _EXPONENT_4.split()},
}

# Amounts must fit a signed 64-bit integer with room for sums of many postings.
AMOUNT_MINOR_MAX = 10**17
_DECIMAL = re.compile(r"([+-]?)([0-9]{1,30})(?:\.([0-9]{1,30}))?")


def currency_exponent(currency: str) -> int:
    """Number of minor-unit digits of ``currency``; raises ``UnknownCurrency``."""
    try:
        return CURRENCY_EXPONENTS[currency]
    except (KeyError, TypeError):
        shown = quoted(currency) if isinstance(currency, str) else currency
        raise UnknownCurrency(f"unknown currency {currency!r}", currency=shown) from None


def parse_amount_minor(text: str, currency: str) -> int:
    """Parse a signed decimal string into minor units of ``currency``, exactly."""
    exponent = currency_exponent(currency)
    match = _DECIMAL.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidAmount(
            f"amount {text!r} is not a decimal string such as '12.34' or '-5'", amount=quoted(text)
        )
    sign, whole, fraction = match.group(1), match.group(2), match.group(3) or ""
    if len(fraction.rstrip("0")) > exponent:
        raise AmountPrecisionExceeded(
            f"{currency} has {exponent} decimal places; amount {text!r} has more",
            amount=text,
            currency=currency,
            exponent=exponent,
        )
    digits = whole + fraction[:exponent].ljust(exponent, "0")
    amount_minor = int(digits) * (-1 if sign == "-" else 1)
    check_amount_range(amount_minor)
    return amount_minor


def check_amount_range(amount_minor: int) -> None:
    if abs(amount_minor) > AMOUNT_MINOR_MAX:
        raise AmountOutOfRange(
            f"amount exceeds the supported magnitude of {AMOUNT_MINOR_MAX} minor units",
            limit_minor=AMOUNT_MINOR_MAX,
        )


# Balances accumulate many postings; they must still fit a signed 64-bit column.
BALANCE_MINOR_MAX = 10**18


def check_balance_range(balance_minor: int) -> None:
    if abs(balance_minor) > BALANCE_MINOR_MAX:
        raise AmountOutOfRange(
            f"the balance would exceed the supported magnitude of {BALANCE_MINOR_MAX} minor units",
            limit_minor=BALANCE_MINOR_MAX,
        )


def format_amount(amount_minor: int, currency: str) -> str:
    """Render minor units as the canonical decimal string, e.g. -1234 BRL -> '-12.34'."""
    exponent = currency_exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    digits = str(abs(amount_minor)).rjust(exponent + 1, "0")
    if exponent == 0:
        return sign + digits
    return f"{sign}{digits[:-exponent]}.{digits[-exponent:]}"


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount: integer minor units of one currency."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        assert isinstance(self.amount_minor, int) and not isinstance(self.amount_minor, bool)
        currency_exponent(self.currency)

    @classmethod
    def parse(cls, text: str, currency: str) -> Money:
        return cls(parse_amount_minor(text, currency), currency)

    def __str__(self) -> str:
        return f"{format_amount(self.amount_minor, self.currency)} {self.currency}"

    @property
    def amount(self) -> str:
        return format_amount(self.amount_minor, self.currency)

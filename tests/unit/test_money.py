"""Money: exact parsing of decimal strings into integer minor units."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import AmountOutOfRange, AmountPrecisionExceeded, InvalidAmount, UnknownCurrency
from domain.money import (
    AMOUNT_MINOR_MAX,
    CURRENCY_EXPONENTS,
    Money,
    currency_exponent,
    format_amount,
    parse_amount_minor,
)

CURRENCIES = ["BRL", "JPY", "BHD", "CLF"]


def _raises(error: type[Exception], code: str, text: object, currency: object = "BRL") -> None:
    with pytest.raises(error) as info:
        parse_amount_minor(text, currency)  # type: ignore[arg-type]
    assert type(info.value) is error
    assert info.value.code == code


# --- exponents ----------------------------------------------------------------------


@pytest.mark.parametrize(("currency", "exponent"), [("BRL", 2), ("JPY", 0), ("BHD", 3), ("CLF", 4), ("USD", 2)])
def test_currency_exponent_follows_iso_4217(currency: str, exponent: int) -> None:
    assert currency_exponent(currency) == exponent


def test_every_currency_has_exactly_one_exponent() -> None:
    # The table is built from four lists; a code in two of them would be silently overwritten.
    from domain import money

    lists = [money._EXPONENT_0, money._EXPONENT_2, money._EXPONENT_3, money._EXPONENT_4]
    codes = [code for text in lists for code in text.split()]
    assert len(codes) == len(set(codes)) == len(CURRENCY_EXPONENTS)


# --- parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.34", "BRL", 1234),
        ("-0.5", "BRL", -50),
        ("1", "BRL", 100),
        ("1.50", "BRL", 150),
        ("+1.5", "BRL", 150),
        ("0.01", "BRL", 1),
        ("0", "BRL", 0),
        ("-0", "BRL", 0),
        ("007.10", "BRL", 710),
        ("1234", "JPY", 1234),
        ("-7", "JPY", -7),
        ("1.234", "BHD", 1234),
        ("-0.001", "BHD", -1),
        ("5", "BHD", 5000),
        ("1.2345", "CLF", 12345),
        ("0.0001", "CLF", 1),
        ("-3.5", "CLF", -35000),
    ],
)
def test_parse_is_exact(text: str, currency: str, minor: int) -> None:
    assert parse_amount_minor(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [("1.500", "BRL", 150), ("1.5000000", "BRL", 150), ("3.0", "JPY", 3), ("-2.00", "JPY", -2), ("0.12300", "BHD", 123)],
)
def test_zero_digits_beyond_the_exponent_are_accepted(text: str, currency: str, minor: int) -> None:
    # Only significant digits count against the exponent: trailing zeros lose nothing.
    assert parse_amount_minor(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency"),
    [("12.345", "BRL"), ("12.3450", "BRL"), ("0.001", "BRL"), ("1.5", "JPY"), ("0.0001", "BHD"), ("1.00001", "CLF")],
)
def test_more_decimals_than_the_exponent_is_precision_exceeded(text: str, currency: str) -> None:
    _raises(AmountPrecisionExceeded, "amount_precision_exceeded", text, currency)


@pytest.mark.parametrize(
    "text",
    ["1e3", "abc", "", " 1", "1 ", "1.", ".5", "1,50", "--1", "+-1", "1.2.3", "0x10", "1_000", "٫5", "1" * 31],
)
def test_non_decimal_strings_are_invalid(text: str) -> None:
    _raises(InvalidAmount, "invalid_amount", text)


@pytest.mark.parametrize("value", [None, 1.5, 150, b"1.50", True])
def test_non_strings_are_invalid(value: object) -> None:
    _raises(InvalidAmount, "invalid_amount", value)


def test_trailing_newline_is_invalid() -> None:
    _raises(InvalidAmount, "invalid_amount", "12.34\n")


def test_non_ascii_digits_are_invalid() -> None:
    _raises(InvalidAmount, "invalid_amount", "\u0661\u0662.\u0663\u0664")  # "١٢.٣٤"


@pytest.mark.parametrize("currency", ["XXX", "brl", "", None, "BRL ", ["BRL"]])
def test_unknown_currency_is_rejected(currency: object) -> None:
    _raises(UnknownCurrency, "unknown_currency", "1.00", currency)


def test_currency_is_checked_before_the_amount() -> None:
    _raises(UnknownCurrency, "unknown_currency", "abc", "XXX")


@pytest.mark.parametrize(
    ("text", "currency"),
    [("1000000000000000.01", "BRL"), ("-1000000000000000.01", "BRL"), ("100000000000000001", "JPY"),
     ("10000000000000.0001", "CLF"), ("9" * 30, "BRL")],
)
def test_amount_beyond_the_limit_is_out_of_range(text: str, currency: str) -> None:
    _raises(AmountOutOfRange, "amount_out_of_range", text, currency)


@pytest.mark.parametrize(("text", "currency"), [("1000000000000000", "BRL"), ("-100000000000000000", "JPY")])
def test_amount_at_the_limit_is_accepted(text: str, currency: str) -> None:
    assert abs(parse_amount_minor(text, currency)) == AMOUNT_MINOR_MAX


# --- formatting ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [(-1234, "BRL", "-12.34"), (5, "BRL", "0.05"), (-5, "BRL", "-0.05"), (0, "BRL", "0.00"), (100, "BRL", "1.00"),
     (1234, "JPY", "1234"), (-1, "JPY", "-1"), (1, "BHD", "0.001"), (12345, "CLF", "1.2345")],
)
def test_format_amount_is_canonical(minor: int, currency: str, text: str) -> None:
    assert format_amount(minor, currency) == text


@given(minor=st.integers(-AMOUNT_MINOR_MAX, AMOUNT_MINOR_MAX), currency=st.sampled_from(CURRENCIES))
def test_parse_of_format_round_trips(minor: int, currency: str) -> None:
    assert parse_amount_minor(format_amount(minor, currency), currency) == minor


# --- Money --------------------------------------------------------------------------


def test_money_parse_and_render() -> None:
    money = Money.parse("-12.3", "BHD")
    assert money == Money(-12300, "BHD")
    assert money.amount == "-12.300"
    assert str(money) == "-12.300 BHD"


@pytest.mark.parametrize("amount", [True, False, 1.5, 1.0, "100"])
def test_money_rejects_non_int_amounts(amount: object) -> None:
    with pytest.raises(AssertionError):
        Money(amount, "BRL")  # type: ignore[arg-type]


def test_money_rejects_unknown_currency() -> None:
    with pytest.raises(UnknownCurrency) as info:
        Money(100, "XXX")
    assert info.value.code == "unknown_currency"

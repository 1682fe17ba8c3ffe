"""Personal data (PIPL): citizen ID numbers kept only as a keyed hash and the last four characters;
phone numbers shown in full only to callers holding `pii:read`."""

from __future__ import annotations

import hashlib
import hmac


def citizen_id_hash(number: str, key: str) -> str:
    return hmac.new(key.encode(), number.upper().encode(), hashlib.sha256).hexdigest()


def mask_citizen_id(last4: str | None) -> str | None:
    return None if last4 is None else "*" * 14 + last4


def mask_phone(phone: str | None) -> str | None:
    if phone is None:
        return None
    digits = phone.lstrip("+")
    if len(digits) < 7:
        return "*" * len(phone)
    return phone[: len(phone) - len(digits) + 3] + "*" * (len(digits) - 7) + digits[-4:]

"""User profiles (``/users/v2``) for the users a dataset's results already hold.

Every user of the results (``Dataset.user_ids``, with their department and status) gets a profile:
login, email, first and last name as ``fields`` name/value pairs, groups, a role, dates. Profiles come
from their own generator (``"<seed>:users"``), so the rows, users and departments are exactly those
of the same config; a user's profile depends only on the seed and the user's index.

``/users/v2`` pages users in id order (the token is the last id, like ``/departments``), every
status included: the endpoint has no status filter.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

from ispring_async.emulator._dataset import Dataset, _entity_uuid

__all__ = ["FIELD_NAMES", "ROLES", "UserDirectory"]

FIELD_NAMES = ("LOGIN", "EMAIL", "FIRST_NAME", "LAST_NAME")
"""The ``fields`` every profile carries, in this order (the ``name`` of each ``<field>``), spelt as
the vendor's pages spell them; the OpenAPI's ``UserProfileFields`` writes ``login``/``email``."""
ROLES = ("learner", "administrator", "department_administrator")
"""Roles profiles hold (``role`` / ``userRoles[].roleType``)."""

_GROUP, _ROLE = 7, 8
_DAY = 86400
_FIRST_ADDED = int(datetime(2016, 6, 1, tzinfo=UTC).timestamp())
_FIRST_NAMES = ("Anna", "Zoë", "Jean-Luc", "Олег", "Mæve", "李", "O'Neil", "Ana & Bo", "Sam <SysOp>", "Ülkü")
_LAST_NAMES = ("Smith", "Müller", "Иванова", "D'Arcy", "García", "山田", "Nguyễn", 'Le "Chef"', "Øster")


class UserDirectory:
    """The profiles of a dataset's users: ``field_values[u]`` (``FIELD_NAMES`` order), ``groups[u]``,
    ``role[u]`` (index into ``ROLES``), ``added[u]``/``last_login[u]`` (epoch seconds, ``0``: never)."""

    def __init__(self, ds: Dataset, *, groups: int = 12) -> None:
        """Draw a profile for every user of ``ds``; ``groups`` is how many groups the account has."""
        self.ds = ds
        seed = ds.config.seed
        rng = random.Random(f"{seed}:users")
        self.group_ids = [_entity_uuid(seed, _GROUP, g) for g in range(groups)]
        self.group_index = {group_id: g for g, group_id in enumerate(self.group_ids)}
        self.role_ids = [_entity_uuid(seed, _ROLE, r) for r in range(len(ROLES))]
        self.field_values: list[tuple[str, str, str, str]] = []
        self.groups: list[tuple[int, ...]] = []
        self.role: list[int] = []
        self.added: list[int] = []
        self.last_login: list[int] = []
        for user in range(len(ds.user_ids)):
            first = _FIRST_NAMES[int(rng.random() * len(_FIRST_NAMES))]
            last = _LAST_NAMES[int(rng.random() * len(_LAST_NAMES))]
            login = f"user{user:06d}"
            self.field_values.append((login, f"{login}@example.com", first, last))
            picked = rng.sample(range(groups), min(groups, int(rng.random() * 4))) if groups else []
            self.groups.append(tuple(sorted(picked)))
            roll = rng.random()
            self.role.append(0 if roll < 0.9 else 1 if roll < 0.95 else 2)
            added = _FIRST_ADDED + int(rng.random() * 2900) * _DAY
            self.added.append(added)
            self.last_login.append(added + int(rng.random() * 200 * _DAY) if rng.random() < 0.85 else 0)
        self.login_index = {values[0]: user for user, values in enumerate(self.field_values)}
        self.email_index = {values[1]: user for user, values in enumerate(self.field_values)}
        ids = ds.user_ids
        self.in_order = sorted(range(len(ids)), key=lambda u: int(ids[u].replace("-", ""), 16))
        self.keys = [int(ids[u].replace("-", ""), 16) for u in self.in_order]

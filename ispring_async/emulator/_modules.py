"""Modules per course and one module result per (enrollment, module): ``/learners/modules/results``.

A course holds 1 to ``MAX_MODULES`` modules, drawn from their own generator (``"<seed>:modules"``) so
the result rows, users and departments are exactly those of the same config without modules. A
module result is not stored: its values are a pure function of its enrollment's row as it is now
(status, dates) and a hash of ``(enrollment key, module)``, so mutations of the enrollment carry over
and a million enrollments cost no memory here beyond the per-course tables.

API order is (enrollment key, module index): the enrollment rows' order, each enrollment's modules in
course order. A page token is the last (key, module index), so it stays valid while enrollments are
inserted (they sort after every existing one) — the same rule as results' tokens.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from ispring_async.emulator._dataset import REFERENCE_NOW, STATUSES, Dataset, _entity_uuid

__all__ = ["MAX_MODULES", "MODULE_STEP", "ModuleCatalog", "ModuleValues"]

MAX_MODULES = 5
"""Most modules a course holds."""
MODULE_STEP = 600
"""Seconds between the access dates of an enrollment's consecutive modules: module ``k`` of an
enrollment is first opened ``k * MODULE_STEP`` after the enrollment's ``accessDate``."""

_MODULE, _COURSE_ITEM = 5, 6
_M64 = (1 << 64) - 1
_DAY = 86400
_S = {name: index for index, name in enumerate(STATUSES)}
_DONE = frozenset({_S["complete"], _S["passed"], _S["accepted"]})
_MODULE_TITLES = (
    "Module {n}",
    "Quiz <{n}> & review",
    "Видеоурок {n}",
    "Étude de cas {n}",
    'Scenario "{n}"',
    "Test ]]> {n}",
    "第{n}章",
    "Wrap-up 🎯 {n}",
)


class ModuleValues(NamedTuple):
    """One module result's values; ``0`` is an absent date, ``-1`` an absent number (hundredths for
    ``progress``/``awarded``)."""

    status: int
    access: int
    due: int
    expiration: int
    completion: int
    spent: int
    progress: int
    awarded: int
    views: int


def _mix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


class ModuleCatalog:
    """The modules of a dataset's courses and the values of every module result.

    ``catalog.course_modules[c]`` lists the module indexes of course ``c`` in course order;
    ``catalog.values(pos, k)`` is module ``k`` of the enrollment at row position ``pos``.
    """

    def __init__(self, ds: Dataset) -> None:
        """Draw the modules of every course of ``ds``."""
        self.ds = ds
        seed = ds.config.seed
        rng = random.Random(f"{seed}:modules")
        self.course_modules: list[list[int]] = []
        self.module_course: list[int] = []
        self.module_ids: list[str] = []
        self.course_item_ids: list[str] = []
        self.module_titles: list[str] = []
        self.module_passing: list[int] = []
        for course in range(len(ds.course_ids)):
            count = 1 + int(rng.random() * MAX_MODULES)
            own = []
            for _ in range(count):
                m = len(self.module_ids)
                own.append(m)
                self.module_course.append(course)
                self.module_ids.append(_entity_uuid(seed, _MODULE, m))
                self.course_item_ids.append(_entity_uuid(seed, _COURSE_ITEM, m))
                self.module_titles.append(_MODULE_TITLES[m % len(_MODULE_TITLES)].format(n=len(own)))
                self.module_passing.append(rng.choice((6000, 8000)) if rng.random() < 0.4 else -1)
            self.course_modules.append(own)
        self.module_index = {module_id: m for m, module_id in enumerate(self.module_ids)}
        self.course_item_index = {item_id: m for m, item_id in enumerate(self.course_item_ids)}

    def modules_of(self, pos: int) -> list[int]:
        """The module indexes of the enrollment at ``pos``, in course order."""
        return self.course_modules[self.ds.r_course[pos]]

    def count(self) -> int:
        """Module results in the dataset now (every module of every enrollment)."""
        per_course = [len(own) for own in self.course_modules]
        return sum(per_course[course] for course in self.ds.r_course)

    def values(self, pos: int, k: int) -> ModuleValues:
        """Module ``k`` (its place in its course) of the enrollment at ``pos``, from that row as it is now."""
        ds = self.ds
        module = self.course_modules[ds.r_course[pos]][k]
        h = _mix(ds.lo[pos] ^ ((k + 1) * 0x9E3779B1))
        enrollment_status = ds.r_status[pos]
        if enrollment_status == _S["not_started"]:
            status = _S["not_started"]
        elif enrollment_status in _DONE:
            status = _S["passed"] if self.module_passing[module] >= 0 else _S["complete"]
        else:
            status = (_S["complete"], _S["in_progress"], _S["not_started"], _S["failed"])[h % 4]
            if status == _S["failed"] and self.module_passing[module] < 0:
                status = _S["incomplete"]
        access = ds.r_access[pos] + k * MODULE_STEP
        started = status != _S["not_started"]
        finished = status in (_S["complete"], _S["passed"], _S["failed"])
        completion = access + 60 + (h >> 8) % (3 * _DAY) if finished else 0
        spent = 1 + (h >> 20) % 3600 if started else 0
        if status in (_S["complete"], _S["passed"]):
            progress = 10000
        elif started:
            progress = 1 + (h >> 32) % 9998
        else:
            progress = 0
        passing = self.module_passing[module]
        awarded = -1
        if passing >= 0 and finished:
            low, high = (0, passing - 1) if status == _S["failed"] else (passing, 10000)
            awarded = low + (h >> 40) % (high - low + 1)
        views = 1 + (h >> 52) % 9 if started else 0
        return ModuleValues(
            status, access, ds.r_due[pos], ds.r_expiration[pos], completion, spent, progress, awarded, views
        )

    def is_overdue(self, values: ModuleValues) -> bool:
        """The results' rule on the module's own dates: due before completion, or before "today"."""
        if not values.due:
            return False
        return values.completion > values.due if values.completion else values.due < REFERENCE_NOW

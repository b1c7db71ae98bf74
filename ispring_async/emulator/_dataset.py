"""The emulator's data: a department tree, users, courses and one result row per enrollment.

Everything is a pure function of ``EmulatorConfig`` (sizes and seed). Rows live in ``array`` columns
of small ints, in API order, so a million rows take tens of megabytes instead of a gigabyte of
objects. API order is the order of each row's key, a 128-bit id shown as its ``enrollmentId``: the
high 64 bits grow with the row's position, so a page token (the last key) finds its place by
bisection and stays valid while rows are inserted (new keys go after every existing one).

Rows of one user are scattered over the key space (a multiplicative permutation of the enrollment
order), as they are when the real service orders by enrollment id. Indexes by user, course and
department (position lists, sorted) let a filtered page skip straight to its rows; date indexes
(``DateIndex``) do the same for ``accessDate``/``dueDate``/``completionDate`` windows.

The vendor's sample request is planted: its user, course and department ids exist, and that user's
result in that course matches every filter of the sample URL (after its sample page token).
"""

from __future__ import annotations

import bisect
import math
import random
from array import array
from collections.abc import Iterator
from datetime import UTC, datetime

from ispring_async._models import CompletionStatus, Department, LearnerResult
from ispring_async.emulator._config import EmulatorConfig
from ispring_async.emulator._index import BLOCK, DateIndex

__all__ = ["DATE_COLUMNS", "STATUSES", "Dataset", "format_uuid"]

STATUSES: tuple[str, ...] = tuple(status.value for status in CompletionStatus)
"""Completion statuses; a row stores its status as an index into this tuple."""
_S = {name: index for index, name in enumerate(STATUSES)}
_COMPLETED = frozenset({_S["complete"], _S["passed"], _S["accepted"], _S["failed"]})
DATE_COLUMNS: tuple[str, ...] = ("access", "due", "completion")
"""Date columns with a window index (``Dataset.date_index``): ``r_access``, ``r_due``, ``r_completion``."""

REFERENCE_NOW = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())
"""The dataset's "today": ``isOverdue`` is judged against it, so it never changes with the wall clock."""
_FIRST_DAY = int(datetime(2017, 1, 1, tzinfo=UTC).timestamp()) // 86400
_LAST_DAY = int(datetime(2024, 12, 1, tzinfo=UTC).timestamp()) // 86400
_DAY = 86400
# Access dates are mostly local midnight in UTC+3, as the vendor's sample shows (21:00:00+00:00).
_MIDNIGHT_UTC3 = 21 * 3600

SAMPLE_USER_ID = "85077abc-2639-11ea-8e3f-0a580af40c09"
SAMPLE_COURSE_ID = "f0e7400a-ca31-11e9-b6fc-0a580af40a22"
SAMPLE_DEPARTMENT_ID = "f0b2d3c0-aded-11e9-bfe6-0a580af40906"

_M64 = (1 << 64) - 1
_KEY_SPAN = (1 << 64) * 3 // 4  # initial rows use the lower 3/4 of the key space; inserts the rest
_USER, _COURSE, _DEPARTMENT, _SESSION = 1, 2, 3, 4

# (status, weight in percent): every status occurs, the common ones often.
_STATUS_MIX = (
    ("not_started", 18),
    ("in_progress", 24),
    ("pending", 3),
    ("complete", 24),
    ("passed", 10),
    ("accepted", 3),
    ("incomplete", 7),
    ("failed", 7),
    ("declined", 4),
)
_STATUS_TABLE = bytes(_S[name] for name, weight in _STATUS_MIX for _ in range(weight))

_COURSE_TITLES = (
    "Course {n}",
    "Safety & Compliance {n}",
    "Onboarding <Part {n}>",
    "Охрана труда {n}",
    "Café & Crème service {n}",
    'Negotiation "Win-Win" {n}',
    "Führungskräfte-Training {n}",
    "販売研修 {n}",
    "Sales 📈 Basics {n}",
    "R&D <Advanced> Topics {n}",
    "O'Reilly's Data Privacy {n}",
    "Customer Care {n}",
)
_DEPARTMENT_NAMES = (
    "Sales & Marketing",
    "R&D <Labs>",
    "Отдел продаж",
    "Finance",
    "Support — EMEA",
    "Logistique Île-de-France",
    "営業部",
    "Operations",
)


def _mix(x: int) -> int:
    """SplitMix64 finaliser: a cheap, well-spread 64-bit hash."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def format_uuid(value: int) -> str:
    """The canonical 8-4-4-4-12 lowercase text of a 128-bit integer."""
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _entity_uuid(seed: int, kind: int, index: int) -> str:
    """A version-1-looking UUID for entity ``index`` of ``kind``, like the vendor's ids."""
    a = _mix(_mix(seed * 0x10001 + kind) ^ index)
    b = _mix(a ^ kind)
    return (
        f"{a >> 32:08x}-{(a >> 16) & 0xFFFF:04x}-{0x1000 | (a & 0x0FFF):04x}-"
        f"{0x8000 | ((b >> 48) & 0x3FFF):04x}-{b & 0xFFFFFFFFFFFF:012x}"
    )


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Dataset:
    """The deterministic data one emulator run serves.

    Columns (``r_*``) are indexed by position in API order; ``0`` means an absent date and ``-1`` an
    absent number. ``progress``/``awarded``/``passing`` scores are stored in hundredths.

    ``Dataset(EmulatorConfig(results=100, seed=1)).record(0)`` is the first row in API order.
    """

    def __init__(self, config: EmulatorConfig, *, index_block: int = BLOCK) -> None:
        """Build every row of ``config``; ``index_block`` is the date indexes' block size (tests
        shrink it so that small datasets span many blocks)."""
        self.config = config
        self.index_block = index_block
        seed = config.seed
        rng = random.Random(seed)
        self._build_departments(rng)
        self._build_courses(rng)
        self._build_users_and_rows(rng)
        self._build_indexes()
        self._add_vanished_departments()
        # Rows inserted after the build: positions >= base_size, per user/course/department.
        self.base_size = len(self.hi)
        self.tail_by_user: dict[int, list[int]] = {}
        self.tail_by_course: dict[int, list[int]] = {}
        self.tail_by_department: dict[int, list[int]] = {}
        # Positions changed in place, in order (4 bytes an update): renderers that cache rows' bytes
        # read the entries they have not seen yet, so any number of renderers can share a dataset.
        self.updated_rows = array("I")
        # accessDate windows are how an export fans out, so that index is ready before the first
        # request; the other two are built on first use (about 0.3 s each at a million rows).
        self._date_indexes: dict[str, DateIndex] = {}
        self.date_index("access")

    # -- building ---------------------------------------------------------------------------------

    def _build_departments(self, rng: random.Random) -> None:
        config = self.config
        count, depth = config.departments, config.department_depth
        parents = [-1]
        levels = [1]
        for index in range(1, count):
            if index < depth:
                parent = index - 1  # a chain guarantees the configured depth
            else:
                parent = rng.choice([d for d in range(index) if levels[d] < depth])
            parents.append(parent)
            levels.append(levels[parent] + 1)
        ids = [_entity_uuid(config.seed, _DEPARTMENT, index) for index in range(count)]
        ids[1 if count > 1 else 0] = SAMPLE_DEPARTMENT_ID
        names = ["Head office"]
        names += [f"{_DEPARTMENT_NAMES[(i - 1) % len(_DEPARTMENT_NAMES)]} {i}" for i in range(1, count)]
        codes = [f"D-{index:04d}" if rng.random() < 0.7 else None for index in range(count)]
        self.department_ids = ids
        self.department_parent = parents
        self.department_names = names
        self.department_codes = codes
        self.department_index = {dept_id: index for index, dept_id in enumerate(ids)}
        children: list[list[int]] = [[] for _ in range(count)]
        for index, parent in enumerate(parents):
            if parent >= 0:
                children[parent].append(index)
        self.department_children = children
        # /departments pages in id order; the token is the last id, like results' tokens.
        self.departments_in_order = sorted(range(count), key=lambda d: int(ids[d].replace("-", ""), 16))

    def _build_courses(self, rng: random.Random) -> None:
        config = self.config
        count = config.course_count
        ids = [_entity_uuid(config.seed, _COURSE, index) for index in range(count)]
        ids[0] = SAMPLE_COURSE_ID
        self.course_ids = ids
        self.course_titles = [
            _COURSE_TITLES[index % len(_COURSE_TITLES)].format(n=index + 1) for index in range(count)
        ]
        self.course_index = {course_id: index for index, course_id in enumerate(ids)}
        # A recommended duration (minutes) for video/training courses only; a session id for trainings.
        self.course_duration = [rng.choice((30, 45, 60, 90)) if rng.random() < 0.3 else -1 for _ in ids]
        self.course_training = [rng.random() < 0.1 for _ in ids]
        self.course_passing = [rng.choice((5000, 7000, 8000)) if rng.random() < 0.6 else -1 for _ in ids]
        self.session_ids = [
            [_entity_uuid(config.seed, _SESSION, index * 4 + k) for k in range(4)] for index in range(count)
        ]

    def _build_users_and_rows(self, rng: random.Random) -> None:
        config = self.config
        total = config.results
        courses = len(self.course_ids)
        mean = min(config.enrollments_per_user, courses)
        departments = config.departments
        blocked, terminated = config.blocked_user_share, config.terminated_user_share

        # Enrollments in user-major order: user u owns enrollments [start[u], start[u + 1]).
        user_dept = array("I")
        user_status = array("B")
        user_courses: list[list[int]] = []
        made = 0
        while made < total:
            k = min(1 + int(rng.random() * (2 * mean - 1)), courses, total - made)
            picked = rng.sample(range(courses), k)
            roll = rng.random()
            status = 3 if roll < blocked else 5 if roll < blocked + terminated else 1
            dept = int(rng.random() * departments)
            if not user_courses:
                # The sample's user: active, in the sample's department, enrolled in the sample's course.
                status, dept = 1, 1 if departments > 1 else 0
                if 0 in picked:
                    picked.remove(0)
                    picked.insert(0, 0)
                else:
                    picked[0] = 0
            user_courses.append(picked)
            user_dept.append(dept)
            user_status.append(status)
            made += k
        users = len(user_courses)
        ids = [_entity_uuid(config.seed, _USER, index) for index in range(users)]
        if ids:
            ids[0] = SAMPLE_USER_ID
        self.user_ids = ids
        self.user_index = {user_id: index for index, user_id in enumerate(ids)}
        self.user_dept = user_dept
        self.user_status = user_status

        def zeros(typecode: str) -> array[int]:
            return array(typecode, bytes(array(typecode).itemsize * total))

        self.lo = zeros("Q")
        self.r_user = zeros("I")
        self.r_course = zeros("I")
        self.r_status = zeros("B")
        self.r_access = zeros("I")
        self.r_due = zeros("I")
        self.r_expiration = zeros("I")
        self.r_completion = zeros("I")
        self.r_spent = zeros("i")
        self.r_progress = zeros("h")
        self.r_awarded = zeros("h")
        self.r_views = zeros("h")
        self.r_flags = zeros("B")
        self.spacing = _KEY_SPAN // (total + 1)
        self.hi = array("Q", range(self.spacing, self.spacing * (total + 1), self.spacing))

        multiplier = self._coprime_multiplier(total)
        offset = total // 2
        by_user_offsets = array("I", [0])
        by_user_rows = array("I")
        e = 0
        for user, picked in enumerate(user_courses):
            positions = []
            for course in picked:
                pos = (e * multiplier + offset) % total
                e += 1
                positions.append(pos)
                self._fill_row(rng, pos, user, course)
            positions.sort()
            by_user_rows.extend(positions)
            by_user_offsets.append(len(by_user_rows))
        self.by_user = (by_user_offsets, by_user_rows)
        if total:
            self._plant_sample_row((0 * multiplier + offset) % total)

    @staticmethod
    def _coprime_multiplier(total: int) -> int:
        if total <= 1:
            return 1
        multiplier = (0x9E3779B1 % total) or 1
        while math.gcd(multiplier, total) != 1:
            multiplier += 1
        return multiplier

    def _fill_row(
        self, rng: random.Random, pos: int, user: int, course: int, *, recent: bool = False
    ) -> None:
        rnd = rng.random
        status = _STATUS_TABLE[int(rnd() * len(_STATUS_TABLE))]
        if recent:
            day = REFERENCE_NOW // _DAY - 1 - int(rnd() * 30)
        else:
            day = _FIRST_DAY + int(rnd() * (_LAST_DAY - _FIRST_DAY))
        access = day * _DAY + (_MIDNIGHT_UTC3 if rnd() < 0.75 else int(rnd() * _DAY))
        due = access + (7 + int(rnd() * 113)) * _DAY if rnd() < 0.35 else 0
        expiration = access + 365 * _DAY if rnd() < 0.08 else 0
        completion = 0
        if status in _COMPLETED or (status == _S["declined"] and rnd() < 0.5):
            completion = access + 60 + int(rnd() * 60 * _DAY)
        not_started = status == _S["not_started"]
        if not_started:
            spent = 0 if rnd() < 0.8 else -1
            progress = 0 if rnd() < 0.5 else -1
            views = 0 if rnd() < 0.75 else -1
        else:
            spent = 1 + int(rnd() * rnd() * 36000) if rnd() < 0.9 else -1
            views = 1 + int(rnd() * 40) if rnd() < 0.75 else -1
            if completion and status != _S["failed"]:
                progress = 10000
            elif status == _S["declined"]:
                progress = -1
            else:
                progress = 1 + int(rnd() * 9998)
        awarded = -1
        passing = self.course_passing[course]
        if status == _S["passed"] or status == _S["failed"] or (status == _S["complete"] and rnd() < 0.3):
            floor = passing if passing > 0 else 5000
            if status == _S["failed"]:
                awarded = int(rnd() * floor)
            else:
                awarded = floor + int(rnd() * (10000 - floor + 1))
        flags = (1 if rnd() < 0.97 else 0) | (2 if self.course_training[course] else 0)
        self.lo[pos] = rng.getrandbits(64)
        self.r_user[pos] = user
        self.r_course[pos] = course
        self.r_status[pos] = status
        self.r_access[pos] = access
        self.r_due[pos] = due
        self.r_expiration[pos] = expiration
        self.r_completion[pos] = completion
        self.r_spent[pos] = spent
        self.r_progress[pos] = progress
        self.r_awarded[pos] = awarded
        self.r_views[pos] = views
        self.r_flags[pos] = flags

    def _plant_sample_row(self, pos: int) -> None:
        """The sample user's result in the sample course matches every filter of the sample URL."""

        def at(text: str) -> int:
            return int(datetime.fromisoformat(text).timestamp())

        self.r_status[pos] = _S["failed"]
        self.r_access[pos] = at("2019-12-25T21:00:00+00:00")
        self.r_due[pos] = at("2019-12-29T21:00:00+00:00")
        self.r_expiration[pos] = 0
        self.r_completion[pos] = at("2019-12-27T10:15:42+00:00")
        self.r_spent[pos] = 1834
        self.r_progress[pos] = 4545
        self.r_awarded[pos] = 4000
        self.r_views[pos] = 3
        self.r_flags[pos] |= 1

    def _build_indexes(self) -> None:
        self.by_course = self._group(self.r_course, len(self.course_ids))
        dept_of_row = array("I", bytes(4 * len(self.r_user)))
        user_dept = self.user_dept
        for pos, user in enumerate(self.r_user):
            dept_of_row[pos] = user_dept[user]
        self.by_department = self._group(dept_of_row, len(self.department_ids))

    def _add_vanished_departments(self) -> None:
        """Append ``vanished_departments`` leaves that ``/departments`` lists and results do not know.

        They come after everything else is built, from their own generator, so the rows, users and
        the other departments are exactly those of the same config without them. They are left out
        of ``department_index`` (the ids ``/learners/results`` resolves) and hold no users.
        """
        config = self.config
        count = config.departments
        rng = random.Random(f"{config.seed}:vanished")
        levels = [1] * count
        for index in range(1, count):
            levels[index] = levels[self.department_parent[index]] + 1
        open_parents = [d for d in range(count) if levels[d] < config.department_depth] or [0]
        for index in range(count, count + config.vanished_departments):
            parent = rng.choice(open_parents)
            self.department_ids.append(_entity_uuid(config.seed, _DEPARTMENT, index))
            self.department_parent.append(parent)
            self.department_names.append(f"Dissolved unit {index}")
            self.department_codes.append(None)
            self.department_children.append([])
            self.department_children[parent].append(index)
        self.vanished = frozenset(range(count, count + config.vanished_departments))
        ids = self.department_ids
        self.departments_in_order = sorted(range(len(ids)), key=lambda d: int(ids[d].replace("-", ""), 16))
        # by_department's offsets must cover every department index (the vanished ones hold no rows).
        offsets, rows = self.by_department
        offsets.extend([offsets[-1]] * config.vanished_departments)
        self.by_department = (offsets, rows)

    @staticmethod
    def _group(keys: array[int], groups: int) -> tuple[array[int], array[int]]:
        """A counting sort of positions by key: (offsets, positions), positions ascending per key."""
        counts = [0] * (groups + 1)
        for key in keys:
            counts[key + 1] += 1
        for index in range(groups):
            counts[index + 1] += counts[index]
        offsets = array("I", counts)
        fill = counts[:-1]
        rows = array("I", bytes(4 * len(keys)))
        for pos, key in enumerate(keys):
            rows[fill[key]] = pos
            fill[key] += 1
        return offsets, rows

    # -- reading ----------------------------------------------------------------------------------

    def date_index(self, column: str) -> DateIndex:
        """The window index of a date column (one of ``DATE_COLUMNS``), built on first use."""
        index = self._date_indexes.get(column)
        if index is None:
            if column not in DATE_COLUMNS:
                raise ValueError(f"no date column {column!r}")
            values: array[int] = getattr(self, f"r_{column}")
            index = self._date_indexes[column] = DateIndex(values, block=self.index_block)
        return index

    def __len__(self) -> int:
        """The number of rows, inserted ones included."""
        return len(self.hi)

    def key(self, pos: int) -> int:
        """The 128-bit key of a row (its enrollment id as an integer)."""
        return (self.hi[pos] << 64) | self.lo[pos]

    def enrollment_id(self, pos: int) -> str:
        """The row's enrollment id (shown only when bit 0 of its flags is set)."""
        h, low = self.hi[pos], self.lo[pos]
        return (
            f"{h >> 32:08x}-{(h >> 16) & 0xFFFF:04x}-{h & 0xFFFF:04x}-"
            f"{low >> 48:04x}-{low & 0xFFFFFFFFFFFF:012x}"
        )

    def position_after(self, key: int) -> int:
        """The position of the first row whose key is greater than ``key`` (keyset pagination)."""
        high, low = key >> 64, key & _M64
        pos = bisect.bisect_left(self.hi, high)
        if pos < len(self.hi) and self.hi[pos] == high and self.lo[pos] <= low:
            pos += 1
        return pos

    def position_of(self, key: int) -> int | None:
        """The position of the row with this key, if any."""
        high, low = key >> 64, key & _M64
        pos = bisect.bisect_left(self.hi, high)
        if pos < len(self.hi) and self.hi[pos] == high and self.lo[pos] == low:
            return pos
        return None

    def is_overdue(self, pos: int) -> bool:
        """Overdue: a due date passed before completion, or before the dataset's "today" if open."""
        due = self.r_due[pos]
        if not due:
            return False
        completion = self.r_completion[pos]
        return completion > due if completion else due < REFERENCE_NOW

    def user_rows(self, user: int) -> Iterator[int]:
        """Positions of a user's rows, ascending (inserted rows last)."""
        offsets, rows = self.by_user
        if user + 1 < len(offsets):
            yield from rows[offsets[user] : offsets[user + 1]]
        yield from self.tail_by_user.get(user, ())

    def record(self, pos: int) -> LearnerResult:
        """The row at ``pos`` as the client should decode it."""
        course = self.r_course[pos]
        flags = self.r_flags[pos]
        due, expiration, completion = self.r_due[pos], self.r_expiration[pos], self.r_completion[pos]
        spent, progress, awarded, views = (
            self.r_spent[pos],
            self.r_progress[pos],
            self.r_awarded[pos],
            self.r_views[pos],
        )
        passing = self.course_passing[course]
        duration = self.course_duration[course]
        return LearnerResult(
            user_id=self.user_ids[self.r_user[pos]],
            course_id=self.course_ids[course],
            course_title=self.course_titles[course],
            session_id=self.session_ids[course][self.lo[pos] & 3] if flags & 2 else None,
            enrollment_id=self.enrollment_id(pos) if flags & 1 else None,
            access_date=_utc(self.r_access[pos]),
            due_date=_utc(due) if due else None,
            expiration_date=_utc(expiration) if expiration else None,
            completion_date=_utc(completion) if completion else None,
            duration=duration if duration >= 0 else None,
            time_spent=spent if spent >= 0 else None,
            completion_status=STATUSES[self.r_status[pos]],
            progress=progress / 100 if progress >= 0 else None,
            awarded_score=awarded / 100 if awarded >= 0 else None,
            passing_score=passing / 100 if awarded >= 0 and passing >= 0 else None,
            is_overdue=self.is_overdue(pos),
            views_count=views if views >= 0 else None,
        )

    def departments(self) -> list[Department]:
        """Every department, in the order ``/departments`` pages them."""
        return [self.department(index) for index in self.departments_in_order]

    def department(self, index: int) -> Department:
        """One department as the client should decode it."""
        parent = self.department_parent[index]
        return Department(
            department_id=self.department_ids[index],
            name=self.department_names[index],
            parent_department_id=self.department_ids[parent] if parent >= 0 else None,
            code=self.department_codes[index],
        )

    def subtree(self, department: int) -> list[int]:
        """A department and all its descendants."""
        found, stack = [], [department]
        while stack:
            index = stack.pop()
            found.append(index)
            stack.extend(self.department_children[index])
        return found

    # -- changing ---------------------------------------------------------------------------------

    def insert(self, rng: random.Random) -> int:
        """Append a new enrollment of a random user in a course they lack; returns its position."""
        users, courses = len(self.user_ids), len(self.course_ids)
        for _ in range(100):
            user = int(rng.random() * users)
            taken = {self.r_course[pos] for pos in self.user_rows(user)}
            if len(taken) < courses:
                break
        else:
            raise RuntimeError("no user lacks a course: the dataset is full")
        course = rng.choice([c for c in range(courses) if c not in taken])
        pos = len(self.hi)
        key = (self.hi[-1] if pos else 0) + self.spacing
        if key > _M64:
            raise RuntimeError("the key space for inserted rows is exhausted (about results / 3 inserts)")
        self.hi.append(key)
        for column in (
            self.lo,
            self.r_user,
            self.r_course,
            self.r_status,
            self.r_access,
            self.r_due,
            self.r_expiration,
            self.r_completion,
            self.r_spent,
            self.r_progress,
            self.r_awarded,
            self.r_views,
            self.r_flags,
        ):
            column.append(0)
        self._fill_row(rng, pos, user, course, recent=True)
        self.tail_by_user.setdefault(user, []).append(pos)
        self.tail_by_course.setdefault(course, []).append(pos)
        self.tail_by_department.setdefault(self.user_dept[user], []).append(pos)
        return pos

    def update(self, rng: random.Random) -> int | None:
        """Move a random row forward (start, progress, complete); returns its position."""
        if not self.hi:
            return None
        pos = int(rng.random() * len(self.hi))
        status = self.r_status[pos]
        if status == _S["not_started"]:
            self.r_status[pos] = _S["in_progress"]
            self.r_progress[pos] = 1 + int(rng.random() * 9998)
        elif status in (_S["in_progress"], _S["incomplete"], _S["pending"]):
            self.r_status[pos] = _S["complete"]
            self.r_progress[pos] = 10000
            self.r_completion[pos] = max(self.r_access[pos] + 60, REFERENCE_NOW - _DAY)
        spent = max(self.r_spent[pos], 0)
        self.r_spent[pos] = spent + 1 + int(rng.random() * 600)
        self.r_views[pos] = max(self.r_views[pos], 0) + 1
        # Only the completion date changes here, but telling every index keeps this safe to extend.
        for index in self._date_indexes.values():
            index.changed(pos)
        self.updated_rows.append(pos)
        return pos

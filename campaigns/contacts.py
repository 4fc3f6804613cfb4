"""A campaign's contact list from CSV, with a report of every row left out and why, and the
per-contact results written back as CSV."""

from __future__ import annotations

import csv
import io
import json
import zoneinfo
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from campaigns import services
from campaigns.models import Campaign, Contact, DoNotCall
from tenants.phone import normalize_e164

NUMBER_COLUMNS = ("number", "phone", "phone_number")
TIMEZONE_COLUMN = "timezone"
OPT_OUT_COLUMN = "opt_out"
_YES = {"1", "true", "yes", "y", "x"}
MAX_CSV_BYTES = 10 * 1024 * 1024


@dataclass
class Problem:
    line: int
    number: str
    reason: str


@dataclass
class ImportReport:
    """What an upload did: contacts added, and each row left out with its line and reason."""

    imported: int = 0
    invalid: list[Problem] = field(default_factory=list)
    duplicates: list[Problem] = field(default_factory=list)
    opted_out: list[Problem] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def contacts_import(*, campaign: Campaign, data: bytes) -> ImportReport:
    """Add the contacts of a CSV file (a `number` column in E.164; optional `timezone` and
    `opt_out`; every other column is a variable such as `first_name`).

    Rows with a bad number or time zone, numbers already listed (in the file or the campaign),
    and numbers on the do-not-call list are reported, not added; an `opt_out` row also puts its
    number on the list. Raises ValidationError for a file that cannot be read at all.
    """
    if campaign.status in (Campaign.Status.COMPLETED, Campaign.Status.CANCELED):
        raise ValidationError("This campaign is over: start a new one.")
    rows = _rows(data)
    report = ImportReport()
    existing = Contact.objects.filter(tenant=campaign.tenant, campaign=campaign).count()
    seen = set(
        Contact.objects.filter(tenant=campaign.tenant, campaign=campaign).values_list(
            "number", flat=True
        )
    )
    blocked = set(DoNotCall.objects.filter(tenant=campaign.tenant).values_list("number", flat=True))
    contacts, opt_outs = [], []
    for line, row in rows:
        raw = _number_of(row)
        try:
            number = normalize_e164(raw)
            zone = _timezone_of(row)
            variables = services.variables_clean(_variables_of(row))
        except ValidationError as exc:
            report.invalid.append(Problem(line, raw[:40], " ".join(exc.messages)))
            continue
        if number in seen:
            report.duplicates.append(Problem(line, number, "already in the list"))
            continue
        seen.add(number)
        if (row.get(OPT_OUT_COLUMN) or "").strip().lower() in _YES:
            opt_outs.append(number)
            report.opted_out.append(Problem(line, number, "opted out: added to do-not-call"))
            continue
        if number in blocked:
            report.opted_out.append(Problem(line, number, "on the do-not-call list"))
            continue
        if existing + len(contacts) >= settings.CAMPAIGN_MAX_CONTACTS:
            report.invalid.append(
                Problem(line, number, f"over {settings.CAMPAIGN_MAX_CONTACTS} contacts")
            )
            continue
        contacts.append((number, zone, variables))
    now = timezone.now()
    with transaction.atomic():
        for number in opt_outs:
            services.dnc_add(tenant=campaign.tenant, number=number, source=DoNotCall.Source.IMPORT)
        Contact.objects.bulk_create(
            [
                Contact(
                    tenant=campaign.tenant,
                    campaign=campaign,
                    number=number,
                    timezone=zone,
                    variables=variables,
                    next_attempt_at=now,
                )
                for number, zone, variables in contacts
            ],
            batch_size=1000,
        )
    report.imported = len(contacts)
    return report


def _rows(data: bytes) -> Iterator[tuple[int, dict[str, str]]]:
    if len(data) > MAX_CSV_BYTES:
        raise ValidationError(f"The file is over {MAX_CSV_BYTES // (1024 * 1024)} MB.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationError("The file is not UTF-8 text.") from exc
    if "\x00" in text:
        raise ValidationError("The file is not a CSV text file.")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [(name or "").strip().lower() for name in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise ValidationError(f"The file is not valid CSV: {exc}.") from exc
    if not any(column in header for column in NUMBER_COLUMNS):
        raise ValidationError("The first line must name the columns, one of them `number`.")
    reader.fieldnames = header
    try:
        yield from ((reader.line_num, _cells(row)) for row in reader)
    except csv.Error as exc:
        raise ValidationError(
            f"The file is not valid CSV at line {reader.line_num}: {exc}."
        ) from exc


def _cells(row: dict) -> dict[str, str]:
    # Extra cells beyond the header land under None: they have no name, so they are dropped.
    return {name: (value or "").strip() for name, value in row.items() if isinstance(name, str)}


def _number_of(row: dict[str, str]) -> str:
    return next((row[c] for c in NUMBER_COLUMNS if row.get(c)), "")


def _timezone_of(row: dict[str, str]) -> str:
    zone = row.get(TIMEZONE_COLUMN, "")
    if zone and zone not in zoneinfo.available_timezones():
        raise ValidationError(f"Unknown time zone {zone[:40]!r}.")
    return zone


def _variables_of(row: dict[str, str]) -> dict[str, str]:
    reserved = {*NUMBER_COLUMNS, TIMEZONE_COLUMN, OPT_OUT_COLUMN}
    return {name: value for name, value in row.items() if name and name not in reserved}


RESULT_COLUMNS = [
    "number",
    "state",
    "outcome",
    "attempts",
    "answered_by",
    "voicemail_left",
    "call_id",
    "call_status",
    "duration",
]


# From the post-call analysis of the contact's last call (empty until it is analysed).
ANALYSIS_COLUMNS = ["success", "sentiment", "summary"]


def results_csv(
    *, variable_names: list[str], rows: Iterable[dict], data_names: Sequence[str] = ()
) -> Iterator[str]:
    """The per-contact results as CSV lines: the fixed columns, the analysis of the last call,
    the contacts' variables, then each field the analysis extracted (`data:<name>`). Cells a
    spreadsheet would run as a formula get a leading apostrophe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            *RESULT_COLUMNS,
            *ANALYSIS_COLUMNS,
            *variable_names,
            *(f"data:{name}" for name in data_names),
        ]
    )
    for row in rows:
        cells = ["" if row[name] is None else row[name] for name in RESULT_COLUMNS]
        cells += [_cell(row.get(name)) for name in ANALYSIS_COLUMNS]
        cells += [_safe(str(row["variables"].get(name, ""))) for name in variable_names]
        data = row.get("data") if isinstance(row.get("data"), dict) else {}
        cells += [_cell(data.get(name)) for name in data_names]
        writer.writerow(cells)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _cell(value: object) -> str:
    """A value of the analysis as a cell: lists and objects as JSON, text defused."""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False)
    return _safe(str(value))


def _safe(value: str) -> str:
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value

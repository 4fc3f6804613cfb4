"""A model's row inserted with a statement built once, for rows written on every turn.

`Model.objects.create()` builds an insert query and compiles it to SQL on every call (about a
third of the CPU of inserting a turn). `RowInserter` builds the statement once per model and
database, and per row does what `save()` does for a new row of a plain model: the defaults (the
model's constructor), each field's `pre_save` and its database value. It is for models without
save() overrides or save signals that matter (the caller checks), whose primary key is made in
Python (a UUID default). No tenant scope is checked: the caller sets the row's tenant.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from django.db import connections, models, router

M = TypeVar("M", bound=models.Model)


class RowInserter(Generic[M]):
    def __init__(self, model: type[M]) -> None:
        self.model = model
        self._statements: dict[str, str] = {}

    def _statement(self, connection) -> str:
        statement = self._statements.get(connection.alias)
        if statement is None:
            quote = connection.ops.quote_name
            fields = self.model._meta.concrete_fields
            statement = "INSERT INTO {} ({}) VALUES ({})".format(
                quote(self.model._meta.db_table),
                ", ".join(quote(field.column) for field in fields),
                ", ".join(["%s"] * len(fields)),
            )
            self._statements[connection.alias] = statement
        return statement

    def insert(self, **values) -> M:
        """Insert one row (`values` as for the model's constructor); returns the instance, as
        saved."""
        row = self.model(**values)
        using = router.db_for_write(self.model, instance=row)
        connection = connections[using]
        params = [
            field.get_db_prep_save(field.pre_save(row, True), connection)
            for field in self.model._meta.concrete_fields
        ]
        with connection.cursor() as cursor:
            cursor.execute(self._statement(connection), params)
        row._state.adding, row._state.db = False, using
        return row

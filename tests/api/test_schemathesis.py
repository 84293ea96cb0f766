"""Property-based run of every documented operation: no 500, and every answer fits the schema.

Bounded (a few examples per operation) so it stays well under a minute on both databases.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from portal.extensions import db  # noqa: E402
from portal.models import utcnow  # noqa: E402
from portal.services import alerts, rules  # noqa: E402
from tests import factories  # noqa: E402

CHECKS = (status_code_conformance, content_type_conformance, response_schema_conformance)
EXAMPLES = 8


def test_no_operation_answers_500_or_breaks_its_schema(app, admin, device):
    tokens = {"person": factories.PersonalTokenFactory(user=admin).token, "device": device.token}
    factories.CommandFactory(device=device)
    factories.ScheduleFactory(device=device)
    factories.ReadingFactory(device=device)
    rule = rules.create_rule(
        admin, name="hot", kind="threshold", device_id=device.id, metric="t", op=">", value=30
    )
    alerts.raise_alert(rule, device.id, 31.0, utcnow())
    db.session.commit()
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    for operation in operations:
        kind = "device" if operation.path.startswith("/api/v1/device/") else "person"
        check_operation(operation, {"Authorization": f"Bearer {tokens[kind]}"})


def check_operation(operation, headers: dict[str, str]) -> None:
    """Send generated cases of one operation; none may get a 500 or break its schema."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        response = case.call(headers=headers)
        assert response.status_code < 500, (case.method, case.path, response.text)
        case.validate_response(response, checks=CHECKS)

    check()

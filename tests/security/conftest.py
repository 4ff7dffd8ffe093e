# The HL7 feeds fixture, for fuzzing the HL7 door.
from tests.integrations.conftest import feeds  # noqa: F401

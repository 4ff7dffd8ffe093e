# The waitlist is tested on the same online-booking practice as the self-service pages.
from tests.selfservice.conftest import always_sending, clinic  # noqa: F401

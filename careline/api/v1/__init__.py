"""The JSON REST API under /api/v1/: what FHIR does not cover (conversations, broadcasts,
reminder rules, reports). Described by the OpenAPI document at /api/v1/openapi.json."""

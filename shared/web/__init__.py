"""The web kit both services are built on: one error type and error table, one way to turn a
pydantic error into an answer, one logging setup, one settings base, one OpenAPI builder. Nothing
here knows a route of either service."""

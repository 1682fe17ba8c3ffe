"""Funding (党建经费): rule sets as data, the yearly computation, its closing and its reports.

`engine` holds the pure rules (no database), `models` the tables and schemas, `service` the
computation and its reads, `api` the endpoints, `jobs` the annual schedule, `reports` the workbook."""

"""The rules of the portal: one module per capability, called by the API, the admin and the CLI."""

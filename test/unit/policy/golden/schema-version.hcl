schema_version = 2

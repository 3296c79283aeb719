"""abgate online path: router config, bucketing, ids, event schema, proxy app."""

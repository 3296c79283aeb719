"""The `abgate` command line: the one place that composes gateway, training and evaluation."""

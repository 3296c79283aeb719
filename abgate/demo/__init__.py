"""`abgate demo`: the whole loop on embedded defaults and the bundled simulator."""

"""Planning a run (full, scan, capture, targeted), the state it is checked against, and the scan."""

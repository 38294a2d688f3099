package dockerimage

import "time"

// SetGrace shortens how long d waits for the answer of an interrupted
// load.
func SetGrace(d *Daemon, g time.Duration) { d.grace = g }

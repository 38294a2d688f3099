package orchestrator

import (
	"context"
	"net/url"
)

// serveStep runs the job's tracker and the bastion's seeder.
type serveStep struct {
	layers      []jobspecLayer
	trackerAddr string
	seederAddr  string
	token       string
}

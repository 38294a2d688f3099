package containerdimage

import (
	"context"
	"fmt"
	"slices"
)

// JobLeases returns the jobs whose import lease (LeaseID) is in the
// namespace: what a job left when its node could not roll back (killed, or
// containerd away longer than the node's cleanup). Sorted.
func (c *Client) JobLeases(ctx context.Context) ([]string, error) {
	var jobs []string
	err := c.guard(ctx, func(ctx context.Context) error {
		leases, err := c.apiLeaseList(c.ns(ctx))
		if err != nil {
			return fmt.Errorf("list leases: %w", err)
		}
		for id, labels := range leases {
			if job := labels[labelJob]; job != "" && id == LeaseID(job) {
				jobs = append(jobs, job)
			}
		}
		return nil
	})
	slices.Sort(jobs)
	return jobs, err
}

// DropJobLease deletes the import lease of job, after which containerd's
// garbage collector (run before this returns) removes the content and
// snapshots only that lease held. Images a job named are not touched: a
// job names its image only once the import is complete and checked.
func (c *Client) DropJobLease(ctx context.Context, job string) error {
	err := c.guard(ctx, func(ctx context.Context) error {
		return c.apiLeaseDelete(c.ns(ctx), LeaseID(job), true)
	})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("drop lease of job %s: %w", job, err)
	}
	return nil
}

package e2e

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/layercast/layercast/orchestrator"
	"github.com/layercast/layercast/testbed"
)

// BenchmarkJob measures one full job on the testbed, 8 hosts at 100 mbit
// and a 300 MB image in 5 layers (LAYERCAST_BENCH_MB and
// LAYERCAST_BENCH_HOSTS change them):
//
//	make build && LAYERCAST_BIN=$PWD/bin/layercast \
//	  go test ./testbed/e2e -run '^$' -bench Job -benchtime 1x
//
// Reported: seconds until every host has the image; seconds from the start
// of the run until every host received its first layer byte; the bastion's
// egress as a multiple of the image size; the node binary's peak RSS (the
// largest VmHWM of any host's node, read when the host is done).
func BenchmarkJob(b *testing.B) {
	binary(b)
	size := envInt("LAYERCAST_BENCH_MB", 300)
	hosts := envInt("LAYERCAST_BENCH_HOSTS", 8)
	lab := testbed.UpForTest(b, testbed.Config{Hosts: hosts, Rate: "100mbit"})
	img := makeImage(b, lab, testbed.ImageSpec{Tag: "lab/bench:v1", Size: int64(size) * mb, Layers: 5})
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		removeImages(b, lab, img.Tag)
		b.StartTimer()
		start := time.Now()
		j := startJob(b, lab, "-i", lab.InventoryPath(), img.Tag)
		var mu sync.Mutex
		firstByte := map[string]time.Time{}
		var peakRSS int64
		var jobID string
		for e := range j.seenUntilDone() {
			switch {
			case e.Kind == orchestrator.EventJobStarted:
				jobID = e.Job.ID
			case e.Kind == orchestrator.EventHostProgress && e.Progress.Done > 0:
				mu.Lock()
				if _, ok := firstByte[e.Host]; !ok {
					firstByte[e.Host] = e.Time
				}
				mu.Unlock()
			case e.Kind == orchestrator.EventHostState && e.State == orchestrator.HostDone:
				if rss := nodePeakRSS(b, lab, e.Host, jobID); rss > peakRSS {
					peakRSS = rss
				}
			}
		}
		rep, code := j.wait(b, time.Minute)
		if code != 0 || rep == nil {
			b.Fatalf("exit %d; stderr:\n%s", code, j.stderr.String())
		}
		var lastFirst time.Time
		for _, t := range firstByte {
			if t.After(lastFirst) {
				lastFirst = t
			}
		}
		if len(firstByte) != hosts {
			b.Fatalf("%d of %d hosts reported a first byte", len(firstByte), hosts)
		}
		b.ReportMetric(rep.Duration.Seconds(), "s/job")
		b.ReportMetric(lastFirst.Sub(start).Seconds(), "s-to-first-byte-all")
		b.ReportMetric(float64(rep.Egress)/float64(rep.Size), "egress/size")
		b.ReportMetric(float64(peakRSS)/(1<<20), "node-peak-RSS-MiB")
		b.ReportMetric(rep.Duration.Seconds()/(float64(rep.Size)/12.5e6), "time/(size/rate)")
	}
}

// seenUntilDone yields events until the job ends.
func (j *job) seenUntilDone() <-chan orchestrator.Event {
	out := make(chan orchestrator.Event)
	go func() {
		defer close(out)
		for {
			select {
			case e := <-j.seen:
				out <- e
			case <-j.done:
				for {
					select {
					case e := <-j.seen:
						out <- e
					default:
						return
					}
				}
			}
		}
	}()
	return out
}

// nodePeakRSS reads VmHWM of the job's node process on a host, in bytes.
func nodePeakRSS(t testing.TB, lab *testbed.Lab, host, jobID string) int64 {
	out, err := lab.Exec(context.Background(), host, "sh", "-c",
		`for p in /proc/[0-9]*; do case "$(readlink $p/exe 2>/dev/null)" in *layercast-$1*) grep VmHWM $p/status;; esac; done`, "sh", jobID)
	if err != nil {
		t.Logf("read node RSS on %s: %v", host, err)
		return 0
	}
	var peak int64
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil && kb*1024 > peak {
				peak = kb * 1024
			}
		}
	}
	return peak
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

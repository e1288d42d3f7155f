// loadgen: a small closed-loop HTTP load generator for bench/extender_bench.py.
//
// Each worker repeats a cycle of POST requests (e.g. /predicate then /prioritize with the same ExtenderArgs, as
// kube-scheduler does per pod) until the duration or request budget runs out, then prints JSON with requests/s,
// cycles/s and latency percentiles per URL. Stdlib only, so it builds in seconds and adds little CPU noise.
//
// With -variants N every body path must contain "{}", expanded to 0..N-1: cycle k sends variant k mod N to
// every URL, so consecutive cycles can carry different pods and nodes, as a real scheduler's requests do.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

type target struct {
	url    string
	bodies [][]byte // one per variant
}

type result struct {
	URL      string  `json:"url"`
	Count    int     `json:"count"`
	Errors   int     `json:"errors"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	MeanMs   float64 `json:"mean_ms"`
	Status   string  `json:"first_error,omitempty"`
	RespSize int     `json:"response_bytes"`
}

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	idx := int(float64(len(sorted)-1) * p)
	return float64(sorted[idx].Microseconds()) / 1000
}

func main() {
	var pairs, bodies string
	concurrency := flag.Int("c", 1, "concurrent workers")
	duration := flag.Duration("d", 3*time.Second, "run time")
	maxCycles := flag.Int("n", 0, "stop after this many cycles in total (0 = no limit)")
	warmup := flag.Int("warmup", 2, "cycles per worker before measuring")
	variants := flag.Int("variants", 0, "body variants: each -bodies path contains {} for 0..N-1 (0: one body)")
	flag.StringVar(&pairs, "urls", "", "comma-separated URLs of one cycle")
	flag.StringVar(&bodies, "bodies", "", "comma-separated body files, one per URL")
	flag.Parse()
	urls, files := strings.Split(pairs, ","), strings.Split(bodies, ",")
	if pairs == "" || len(urls) != len(files) {
		fmt.Fprintln(os.Stderr, "loadgen: -urls and -bodies must have the same number of entries")
		os.Exit(2)
	}
	targets := make([]target, len(urls))
	loaded := map[string][]byte{} // a file named for several URLs is read (and held) once
	read := func(path string) []byte {
		if b, ok := loaded[path]; ok {
			return b
		}
		b, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(2)
		}
		loaded[path] = b
		return b
	}
	for i := range urls {
		if *variants <= 0 {
			targets[i] = target{urls[i], [][]byte{read(files[i])}}
			continue
		}
		if !strings.Contains(files[i], "{}") {
			fmt.Fprintln(os.Stderr, "loadgen: with -variants every -bodies path must contain {}")
			os.Exit(2)
		}
		for v := 0; v < *variants; v++ {
			targets[i].bodies = append(targets[i].bodies, read(strings.ReplaceAll(files[i], "{}", fmt.Sprint(v))))
		}
		targets[i].url = urls[i]
	}
	client := &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: *concurrency, DisableCompression: true},
	}
	lat := make([][]time.Duration, len(targets))
	errs := make([]int, len(targets))
	sizes := make([]int, len(targets))
	firstErr := make([]string, len(targets))
	var mu sync.Mutex
	var cycles int
	send := func(i, cycle int) (time.Duration, int, error) {
		body := targets[i].bodies[cycle%len(targets[i].bodies)]
		start := time.Now()
		resp, err := client.Post(targets[i].url, "application/json", bytes.NewReader(body))
		if err != nil {
			return 0, 0, err
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return 0, int(n), fmt.Errorf("status %d", resp.StatusCode)
		}
		return time.Since(start), int(n), nil
	}
	for w := 0; w < *concurrency; w++ {
		for k := 0; k < *warmup; k++ {
			for i := range targets {
				send(i, k)
			}
		}
	}
	deadline := time.Now().Add(*duration)
	began := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < *concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				mu.Lock()
				if *maxCycles > 0 && cycles >= *maxCycles {
					mu.Unlock()
					return
				}
				cycle := cycles + *warmup
				cycles++
				mu.Unlock()
				for i := range targets {
					d, n, err := send(i, cycle)
					mu.Lock()
					if err != nil {
						errs[i]++
						if firstErr[i] == "" {
							firstErr[i] = err.Error()
						}
					} else {
						lat[i] = append(lat[i], d)
						sizes[i] = n
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(began).Seconds()
	out := map[string]any{"elapsed_s": elapsed, "cycles": cycles, "cycles_per_s": float64(cycles) / elapsed}
	var results []result
	var all []time.Duration
	total := 0
	for i := range targets {
		sort.Slice(lat[i], func(a, b int) bool { return lat[i][a] < lat[i][b] })
		var sum time.Duration
		for _, d := range lat[i] {
			sum += d
		}
		mean := 0.0
		if len(lat[i]) > 0 {
			mean = float64(sum.Microseconds()) / 1000 / float64(len(lat[i]))
		}
		results = append(results, result{targets[i].url, len(lat[i]), errs[i], percentile(lat[i], 0.5),
			percentile(lat[i], 0.99), mean, firstErr[i], sizes[i]})
		all = append(all, lat[i]...)
		total += len(lat[i])
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	out["requests_per_s"] = float64(total) / elapsed
	out["p50_ms"] = percentile(all, 0.5)
	out["p99_ms"] = percentile(all, 0.99)
	out["targets"] = results
	json.NewEncoder(os.Stdout).Encode(out)
}

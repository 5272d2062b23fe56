// compare.go: the loops of `cargo bench --bench compare` (benches/compare/) on goroutines, so
// that Go's figures can be reported beside that bench's tables. Go is not a dependency of the
// crate: this is run by hand, never by CI.
//
//	apt-get install golang-go      # Go 1.19 or newer
//	go run benches/go/compare.go   # about 2 minutes; -rounds, -sample, -sizes, -parked-rounds
//
// Rows, in the units of the Rust bench (time per operation; "threads" is GOMAXPROCS):
//
//   - yield (1): two goroutines each calling runtime.Gosched() in a loop; one yield.
//   - spawn_join (1 and 2): `go` a batch of 1000 empty goroutines, then wait for the batch
//     with a sync.WaitGroup; one goroutine.
//   - pingpong (1 and 2): two goroutines pass a counter over two unbuffered channels; one
//     round trip.
//   - mutex (1 and 2): 4 goroutines each doing Lock; runtime.Gosched(); Unlock on one
//     sync.Mutex; one critical section.
//   - select3 (1): one goroutine selects over the receives of 3 unbuffered channels while a
//     partner sends on them in turn; one message.
//   - parked (1): n goroutines, each parked receiving from one shared unbuffered channel, then
//     released (n sends) and waited for (a WaitGroup): time per goroutine of each phase, and
//     VmRSS and VmPTE per parked goroutine (read before the spawns and with every goroutine
//     parked). 10^4, 10^5 and 10^6 goroutines.
//
// As in the Rust bench, every measurement is a child process (this program re-executed with
// -child), the cases of a row run one after the other in each round, and the figures are
// medians over the rounds. A micro-benchmark child warms its loop up while finding how many
// operations fill a quarter of the sample, then times one run of about the sample.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// batch is the number of goroutines started before a batch is waited for.
const batch = 1000

// contenders is the number of goroutines contending for the mutex.
const contenders = 4

// micro is one micro-benchmark: its name (as in the Rust bench), GOMAXPROCS, its table label,
// and its loop (runs iters operations, returns their time).
type micro struct {
	name    string
	procs   int
	label   string
	measure func(iters int) time.Duration
}

var micros = []micro{
	{"yield", 1, "yield, 2 goroutines (one switch)", yieldLoop},
	{"spawn_join-1", 1, "spawn + join an empty goroutine (batches of 1000)", spawnJoinLoop},
	{"spawn_join-2", 2, "the same on 2 scheduler threads", spawnJoinLoop},
	{"pingpong-1", 1, "unbuffered-channel ping-pong round trip", pingPongLoop},
	{"pingpong-2", 2, "the same on 2 scheduler threads", pingPongLoop},
	{"mutex-1", 1, "4 goroutines: Lock, Gosched, Unlock (one critical section)", mutexLoop},
	{"mutex-2", 2, "the same on 2 scheduler threads", mutexLoop},
	{"select3", 1, "select over 3 channels (one message)", select3Loop},
}

// yieldLoop: two goroutines each yield iters times; the time of one yield.
func yieldLoop(iters int) time.Duration {
	var wg sync.WaitGroup
	wg.Add(1)
	start := time.Now()
	go func() {
		defer wg.Done()
		for i := 0; i < iters; i++ {
			runtime.Gosched()
		}
	}()
	for i := 0; i < iters; i++ {
		runtime.Gosched()
	}
	wg.Wait()
	return time.Since(start) / 2
}

// spawnJoinLoop: iters empty goroutines, in batches waited for with a WaitGroup.
func spawnJoinLoop(iters int) time.Duration {
	var wg sync.WaitGroup
	start := time.Now()
	for done := 0; done < iters; done += batch {
		n := iters - done
		if n > batch {
			n = batch
		}
		wg.Add(n)
		for i := 0; i < n; i++ {
			go wg.Done()
		}
		wg.Wait()
	}
	return time.Since(start)
}

// pingPongLoop: iters round trips over two unbuffered channels.
func pingPongLoop(iters int) time.Duration {
	ping, pong := make(chan int), make(chan int)
	go func() {
		for i := 0; i < iters; i++ {
			pong <- <-ping
		}
	}()
	start := time.Now()
	for i := 0; i < iters; i++ {
		ping <- i
		if <-pong != i {
			panic("ping-pong: wrong value")
		}
	}
	return time.Since(start)
}

// mutexLoop: iters critical sections shared by 4 goroutines.
func mutexLoop(iters int) time.Duration {
	var m sync.Mutex
	var wg sync.WaitGroup
	count := 0
	start := time.Now()
	for c := 0; c < contenders; c++ {
		share := iters / contenders
		if c < iters%contenders {
			share++
		}
		wg.Add(1)
		go func(share int) {
			defer wg.Done()
			for i := 0; i < share; i++ {
				m.Lock()
				runtime.Gosched()
				count++
				m.Unlock()
			}
		}(share)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if count != iters {
		panic("mutex: lost a critical section")
	}
	return elapsed
}

// select3Loop: iters messages, message i on channel i % 3, received by a select.
func select3Loop(iters int) time.Duration {
	chans := [3]chan int{make(chan int), make(chan int), make(chan int)}
	go func() {
		for i := 0; i < iters; i++ {
			chans[i%3] <- i
		}
	}()
	start := time.Now()
	for i := 0; i < iters; i++ {
		var v int
		select {
		case v = <-chans[0]:
		case v = <-chans[1]:
		case v = <-chans[2]:
		}
		if v != i {
			panic("select3: wrong value")
		}
	}
	return time.Since(start)
}

// sample warms f up while finding how many operations fill a quarter of the sample, then
// times one run of about the sample; returns nanoseconds per operation.
func sample(f func(int) time.Duration, d time.Duration) float64 {
	quarter := d.Seconds() / 4
	iters := 1
	var perOp float64
	for {
		t := f(iters).Seconds()
		if t >= quarter || iters >= 1<<40 {
			perOp = t / float64(iters)
			break
		}
		grow := 10.0
		if t > 0 {
			grow = quarter / t * 1.2
		}
		if grow < 2 {
			grow = 2
		} else if grow > 10 {
			grow = 10
		}
		iters = int(float64(iters)*grow + 1)
	}
	iters = int(d.Seconds() / perOp)
	if iters < 1 {
		iters = 1
	}
	return float64(f(iters).Nanoseconds()) / float64(iters)
}

// memory returns VmRSS and VmPTE of this process, in KiB.
func memory() (rss, pte float64) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		panic(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(fields[1], 64)
		switch fields[0] {
		case "VmRSS:":
			rss = v
		case "VmPTE:":
			pte = v
		}
	}
	return
}

// parkedFields are the names of parked's results, in order.
var parkedFields = []string{"n", "spawn_ns", "run_ns", "release_ns", "rss0", "rss1", "pte0", "pte1"}

// parked runs n goroutines parked on one channel (GOMAXPROCS=1) and returns parkedFields.
func parked(n int) []float64 {
	runtime.GOMAXPROCS(1)
	gate := make(chan struct{})
	allIn := make(chan struct{})
	var arrived int64
	var wg sync.WaitGroup
	wg.Add(n)
	rss0, pte0 := memory()
	t0 := time.Now()
	for i := 0; i < n; i++ {
		go func() {
			if atomic.AddInt64(&arrived, 1) == int64(n) {
				close(allIn)
			}
			<-gate
			wg.Done()
		}()
	}
	t1 := time.Now()
	// The spawned goroutines run when this one blocks; the last to arrive wakes it.
	<-allIn
	t2 := time.Now()
	rss1, pte1 := memory()
	t2b := time.Now()
	for i := 0; i < n; i++ {
		gate <- struct{}{}
	}
	wg.Wait()
	t3 := time.Now()
	ns := func(a, b time.Time) float64 { return float64(b.Sub(a).Nanoseconds()) }
	return []float64{float64(n), ns(t0, t1), ns(t1, t2), ns(t2b, t3), rss0, rss1, pte0, pte1}
}

// child runs one case and prints its RESULT line: `micro <name> <sample ms>` or
// `parked <n>`.
func child(args []string) {
	switch args[0] {
	case "micro":
		ms, _ := strconv.Atoi(args[2])
		for _, m := range micros {
			if m.name == args[1] {
				runtime.GOMAXPROCS(m.procs)
				ns := sample(m.measure, time.Duration(ms)*time.Millisecond)
				fmt.Printf("RESULT ns=%g\n", ns)
				return
			}
		}
		panic("no case " + args[1])
	case "parked":
		n, _ := strconv.Atoi(args[1])
		values := parked(n)
		pairs := make([]string, len(values))
		for i, v := range values {
			pairs[i] = fmt.Sprintf("%s=%g", parkedFields[i], v)
		}
		fmt.Printf("RESULT %s\n", strings.Join(pairs, " "))
	default:
		panic("unknown child kind " + args[0])
	}
}

// runChild re-executes this program as a child and returns its RESULT pairs.
func runChild(args ...string) (map[string]float64, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(exe, append([]string{"-child"}, args...)...).Output()
	if err != nil {
		return nil, fmt.Errorf("%v: %v", args, err)
	}
	values := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if !strings.HasPrefix(sc.Text(), "RESULT ") {
			continue
		}
		for _, kv := range strings.Fields(strings.TrimPrefix(sc.Text(), "RESULT ")) {
			k, v, _ := strings.Cut(kv, "=")
			values[k], _ = strconv.ParseFloat(v, 64)
		}
	}
	return values, nil
}

// median of xs (0 if empty).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// fmtNs formats a time in nanoseconds as the Rust bench does.
func fmtNs(ns float64) string {
	switch {
	case ns < 100:
		return fmt.Sprintf("%.1f ns", ns)
	case ns < 1e6:
		return fmt.Sprintf("%s ns", grouped(int64(ns+0.5)))
	default:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	}
}

// grouped writes v with its digits grouped by three.
func grouped(v int64) string {
	s := strconv.FormatInt(v, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// cpuModel is lscpu's model name, L3 and CPU count.
func cpuModel() string {
	out, err := exec.Command("lscpu").Output()
	if err != nil {
		return "?"
	}
	get := func(name string) string {
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, name+":") {
				return strings.TrimSpace(strings.TrimPrefix(line, name+":"))
			}
		}
		return "?"
	}
	return fmt.Sprintf("%s (L3 %s, %s CPUs)", get("Model name"), get("L3 cache"), get("CPU(s)"))
}

// main is a child (-child) or the comparison: rounds of children, then the tables.
func main() {
	if len(os.Args) > 1 && os.Args[1] == "-child" {
		child(os.Args[2:])
		return
	}
	rounds := flag.Int("rounds", 11, "rounds of the micro-benchmarks")
	sampleMs := flag.Int("sample", 100, "milliseconds per micro-benchmark measurement")
	parkedRounds := flag.Int("parked-rounds", 3, "rounds of the parked goroutines")
	sizesFlag := flag.String("sizes", "10000,100000,1000000", "goroutine counts of the parked row")
	flag.Parse()
	var sizes []int
	for _, s := range strings.Split(*sizesFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			panic("-sizes: " + s)
		}
		sizes = append(sizes, n)
	}

	fmt.Printf("Go %s on %s\n", runtime.Version(), cpuModel())
	ns := make([][]float64, len(micros))
	parkedRuns := make([][]map[string]float64, len(sizes))
	for r := 0; r < *rounds || r < *parkedRounds; r++ {
		if r < *rounds {
			for i, m := range micros {
				v, err := runChild("micro", m.name, strconv.Itoa(*sampleMs))
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					continue
				}
				ns[i] = append(ns[i], v["ns"])
			}
		}
		if r < *parkedRounds {
			for i, n := range sizes {
				v, err := runChild("parked", strconv.Itoa(n))
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					continue
				}
				parkedRuns[i] = append(parkedRuns[i], v)
			}
		}
		fmt.Printf("round %d done\n", r+1)
	}

	fmt.Printf("\nMedians over rounds: %d (samples of %d ms); threads = GOMAXPROCS\n\n", *rounds, *sampleMs)
	fmt.Println("| operation (time per operation) | threads | Go |")
	fmt.Println("|---|---:|---:|")
	for i, m := range micros {
		fmt.Printf("| %s | %d | %s |\n", m.label, m.procs, fmtNs(median(ns[i])))
	}
	fmt.Printf("\nParked goroutines, GOMAXPROCS=1, medians over rounds: %d\n\n", *parkedRounds)
	fmt.Println("| goroutines | total time | spawn, per task | first run to the park, per task | release + join, per task | resident memory per parked goroutine | page tables per goroutine | VmPTE, all parked |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|")
	for i, n := range sizes {
		field := func(k string) float64 {
			var xs []float64
			for _, run := range parkedRuns[i] {
				xs = append(xs, run[k])
			}
			return median(xs)
		}
		if len(parkedRuns[i]) == 0 {
			fmt.Printf("| %s | failed |\n", grouped(int64(n)))
			continue
		}
		spawn, run, release := field("spawn_ns"), field("run_ns"), field("release_ns")
		total := (spawn + run + release) / 1e9
		fn := float64(n)
		fmt.Printf("| %s | %.3f s | %s | %s | %s | %.2f KiB | %.0f B | %.1f MiB |\n",
			grouped(int64(n)), total, fmtNs(spawn/fn), fmtNs(run/fn), fmtNs(release/fn),
			(field("rss1")-field("rss0"))/fn, (field("pte1")-field("pte0"))*1024/fn, field("pte1")/1024)
	}
}

package login

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiterSet holds one token bucket per key (client IP or account name),
// forgetting keys idle for longer than it takes their bucket to refill, and
// never holding more than max keys (the oldest idle go first).
type limiterSet struct {
	mu    sync.Mutex
	rate  rate.Limit
	burst int
	max   int
	m     map[string]*limiterEntry
	last  time.Time
}

type limiterEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiterSet(r rate.Limit, burst, max int) *limiterSet {
	return &limiterSet{rate: r, burst: burst, max: max, m: make(map[string]*limiterEntry)}
}

// allow takes one token for key.
func (s *limiterSet) allow(key string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.last) > time.Minute || len(s.m) >= s.max {
		s.prune(now)
	}
	e, ok := s.m[key]
	if !ok {
		e = &limiterEntry{lim: rate.NewLimiter(s.rate, s.burst)}
		s.m[key] = e
	}
	e.seen = now
	return e.lim.AllowN(now, 1)
}

func (s *limiterSet) prune(now time.Time) {
	s.last = now
	refill := time.Duration(float64(s.burst) / float64(s.rate) * float64(time.Second))
	for k, e := range s.m {
		if now.Sub(e.seen) > refill {
			delete(s.m, k)
		}
	}
	for k := range s.m { // still full: drop arbitrary entries (a fresh bucket is full anyway)
		if len(s.m) < s.max {
			break
		}
		delete(s.m, k)
	}
}

package source

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// maxBackoff caps the pause between attempts, and how long a server's Retry-After is honoured.
const maxBackoff = time.Minute

// transientError marks a failure worth another attempt: the network, a 5xx, a stalled or truncated
// transfer. Everything else (404, a full disk, a sum mismatch) fails at once.
type transientError struct {
	err   error
	after time.Duration // the server's Retry-After, if it sent one
}

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

func transient(err error) error { return &transientError{err: err} }

// retry runs fn until it succeeds, fails for good, or fails f.attempts times in a row without
// progress. An attempt that got further than any before it (progressed) starts the count again,
// so a long download over a flaky link that resumes each time is not given up on half-way.
func (f *Fetcher) retry(ctx context.Context, what string, fn func(context.Context) (progressed bool, err error)) error {
	failures := 0
	for {
		progressed, err := fn(ctx)
		if err == nil {
			return nil
		}
		var t *transientError
		if !errors.As(err, &t) || ctx.Err() != nil {
			return err
		}
		if progressed {
			failures = 0
		}
		failures++
		if failures >= f.attempts {
			return fmt.Errorf("giving up after %d attempts: %w", f.attempts, err)
		}
		delay := f.backoff
		for i := 1; i < failures && delay < maxBackoff; i++ {
			delay *= 2
		}
		delay = min(max(delay, t.after), maxBackoff)
		f.log.Warn("attempt failed, will retry", "url", what,
			"attempt", fmt.Sprintf("%d of %d", failures, f.attempts), "retry_in", delay, "err", err)
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%w (waiting to retry after: %v)", ctx.Err(), err)
		case <-timer.C:
		}
	}
}

package hypervisor

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestUntilStopped(t *testing.T) {
	errStopped := errors.New("the guest stopped")
	tests := []struct {
		name      string
		end       func(stopped chan struct{}, cancelParent, stop context.CancelFunc)
		wantCause error
	}{
		{"the machine stops", func(stopped chan struct{}, _, _ context.CancelFunc) { close(stopped) }, errStopped},
		{"the parent ends", func(_ chan struct{}, cancelParent, _ context.CancelFunc) { cancelParent() }, context.Canceled},
		{"the caller is done", func(_ chan struct{}, _, stop context.CancelFunc) { stop() }, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent, cancelParent := context.WithCancel(context.Background())
			defer cancelParent()
			stopped := make(chan struct{})
			ctx, stop := UntilStopped(parent, stopped, func() error { return errStopped })
			defer stop()
			if ctx.Err() != nil {
				t.Fatalf("ended before anything happened: %v", ctx.Err())
			}
			tt.end(stopped, cancelParent, stop)
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("the context did not end")
			}
			if got := context.Cause(ctx); !errors.Is(got, tt.wantCause) {
				t.Errorf("cause = %v, want %v", got, tt.wantCause)
			}
		})
	}
}

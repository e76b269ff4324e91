package flash

import (
	"io"
	"log/slog"
)

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

type nopTracker struct{}

func (nopTracker) Add(int64)        {}
func (nopTracker) SetCurrent(int64) {}
func (nopTracker) SetTotal(int64)   {}
func (nopTracker) Done(error)       {}

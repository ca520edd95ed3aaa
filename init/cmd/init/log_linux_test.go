package main

import (
	"bytes"
	"log/slog"
	"testing"
)

func TestLoggerLines(t *testing.T) {
	var buf bytes.Buffer
	level := new(slog.LevelVar)
	log := newLogger(&buf, level)
	log.Info("agent started", "pid", 42)
	log.Debug("hidden at info")
	level.Set(slog.LevelDebug)
	log.Debug("boot step", "step", "mount proc on /proc")
	want := "confguest-init: level=INFO msg=\"agent started\" pid=42\n" +
		"confguest-init: level=DEBUG msg=\"boot step\" step=\"mount proc on /proc\"\n"
	if got := buf.String(); got != want {
		t.Errorf("logger wrote %q, want %q", got, want)
	}
}

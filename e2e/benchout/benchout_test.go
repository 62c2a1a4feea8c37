// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package benchout

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	t.Run("unset", func(t *testing.T) {
		t.Setenv(Env, "")
		if err := Write(Row{Bench: "x", Figure: "f", Size: 1, Value: 1}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("appends", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "out")
		t.Setenv(Env, dir)
		rows := []Row{
			{Bench: "wg-peers", Figure: "program", Size: 100, Value: 2, Unit: "s", Ref: "wg setconf", RefValue: 4},
			{Bench: "wg-peers", Figure: "program", Size: 500, Value: 3, Unit: "s"},
		}
		for _, r := range rows {
			if err := Write(r); err != nil {
				t.Fatal(err)
			}
		}
		f, err := os.Open(filepath.Join(dir, "wg-peers.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var got []Row
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var r Row
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			got = append(got, r)
		}
		if len(got) != 2 || got[0].Size != 100 || got[1].Size != 500 {
			t.Fatalf("rows %+v", got)
		}
		if got[0].Ratio != 0.5 || got[1].Ratio != 0 || got[0].Time.IsZero() {
			t.Errorf("ratio or time not filled in: %+v", got)
		}
	})
	t.Run("bad name", func(t *testing.T) {
		t.Setenv(Env, t.TempDir())
		if err := Write(Row{Bench: "../x"}); err == nil {
			t.Fatal("a bench name with a path was accepted")
		}
	})
}

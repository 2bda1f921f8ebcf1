package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"layer45/harness/cache"
)

const cacheUsage = `usage: l45 cache list                show entries, least recently used first, and the bound
       l45 cache prune [--max SIZE]  evict least recently used entries not in use down to
                                     the bound ($L45_CACHE_MAX, default 30G) or to SIZE
       l45 cache clean               remove every entry not in use, and build debris

SIZE is bytes or a number with K, M, G or T (powers of 1024), e.g. 20G, 500M.
Entries in use (held by a running go test or l45) are never removed.
Exit status: 0 done; 1 an error, or prune left the cache over the bound
because the rest is in use; 2 misuse.`

// cacheCmd runs l45 cache SUBCOMMAND; progress goes to standard error, the
// result to standard output.
func cacheCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		misuse("cache", cacheUsage, "which one: list, prune or clean?")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("l45 cache "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	max := fs.String("max", "", "")
	switch sub {
	case "list", "prune", "clean":
	case "-h", "--help", "help":
		fmt.Println(cacheUsage)
		return nil
	default:
		misuse("cache", cacheUsage, "unknown subcommand %q", sub)
	}
	if err := fs.Parse(args); err != nil {
		misuse("cache", cacheUsage, "%s: %v", sub, err)
	}
	if fs.NArg() > 0 {
		misuse("cache", cacheUsage, "%s takes no arguments, got %q", sub, fs.Args())
	}
	if *max != "" && sub != "prune" {
		misuse("cache", cacheUsage, "--max goes with prune only")
	}
	c, err := cache.Default()
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		return cacheList(ctx, c)
	case "prune":
		bound, note := c.Max(), c.Bound()
		if *max != "" {
			if bound, err = cache.ParseMax(*max); err != nil {
				misuse("cache", cacheUsage, "--max: %v", err)
			}
			note = cache.FormatSize(bound) + " (--max " + *max + ")"
		}
		if bound < 0 {
			fmt.Printf("cache %s: no bound %s, nothing to prune\n", c.Root(), strings.TrimPrefix(note, "none "))
			return nil
		}
		r, err := c.Prune(ctx, bound, os.Stderr)
		if err != nil {
			return err
		}
		report(c, r, note)
		if over := r.Over(); over > 0 {
			return fmt.Errorf("the cache is still %s over the bound %s: %s in use (l45 cache list marks them); prune again once the go test or l45 runs using them have ended",
				cache.FormatSize(over), note, plural(len(r.InUse), "entry is", "entries are"))
		}
		return nil
	default: // clean
		r, err := c.Clean(ctx, os.Stderr)
		if err != nil {
			return err
		}
		report(c, r, "")
		if len(r.InUse) > 0 {
			fmt.Printf("kept %s in use (%s); run l45 cache clean again once the go test or l45 runs using them have ended\n",
				plural(len(r.InUse), "entry"), cache.FormatSize(r.Total))
		}
		return nil
	}
}

// plural writes n and the word, or its plural form ("entry" → "entries",
// else the given form or word+"s").
func plural(n int, word string, pl ...string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	switch {
	case len(pl) > 0:
		word = pl[0]
	case strings.HasSuffix(word, "y"):
		word = strings.TrimSuffix(word, "y") + "ies"
	default:
		word += "s"
	}
	return fmt.Sprintf("%d %s", n, word)
}

func report(c *cache.Cache, r *cache.PruneResult, bound string) {
	fmt.Printf("removed %s, freed %s", plural(len(r.Removed), "entry"), cache.FormatSize(r.Freed))
	if r.Debris > 0 {
		fmt.Printf(" and %s of interrupted builds or evictions", plural(r.Debris, "leftover"))
	}
	fmt.Printf("; cache %s now holds %s", c.Root(), cache.FormatSize(r.Total))
	if bound != "" {
		fmt.Printf(", bound %s", bound)
	}
	fmt.Println()
}

func cacheList(ctx context.Context, c *cache.Cache) error {
	entries, err := c.List(ctx, os.Stderr)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		fmt.Printf("cache %s is empty; bound %s\n", c.Root(), c.Bound())
		return nil
	}
	fmt.Printf("cache %s, least recently used first (prune evicts from the top):\n", c.Root())
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "KIND\tSIZE\tLAST USED\tIN USE\tKEY")
	var total, inUse int64
	for _, e := range entries {
		mark := ""
		if e.InUse {
			mark = "yes"
			inUse += e.Size
		}
		total += e.Size
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", e.Kind, cache.FormatSize(e.Size), e.LastUse.Local().Format(time.DateTime), mark, e.Key)
	}
	w.Flush()
	fmt.Printf("total %s in %s (%s in use); bound %s", cache.FormatSize(total), plural(len(entries), "entry"), cache.FormatSize(inUse), c.Bound())
	if max := c.Max(); max >= 0 && total > max {
		fmt.Printf(": %s over, l45 cache prune evicts what is not in use", cache.FormatSize(total-max))
	}
	fmt.Println()
	return nil
}

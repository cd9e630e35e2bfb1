// A fast stand-in for an application backend behind Herald's connect proxy, for load
// runs only (`herald-loadtest connect-storm --no-token` against a node with
// HERALD_PROXY_CONNECT_ENDPOINT=http://127.0.0.1:PORT/connect). Standard library only:
//
//	(cd loadtest/proxy-backend && go run . -listen 127.0.0.1:9911)
//
// It answers every connect with a user named after the request's client id, as a
// backend that looked a session cookie up in a cache would, and counts the requests.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"sync/atomic"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9911", "address to serve on")
	flag.Parse()
	var served atomic.Int64
	http.HandleFunc("/connect", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Client string `json:"client"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		served.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"result": map[string]any{"user": "u-" + req.Client},
		})
	})
	go func() {
		for range time.Tick(5 * time.Second) {
			log.Printf("connect requests served: %d", served.Load())
		}
	}()
	log.Printf("proxy backend on %s", *listen)
	log.Fatal(http.ListenAndServe(*listen, nil))
}

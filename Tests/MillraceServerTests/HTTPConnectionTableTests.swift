import MillraceFormat
@testable import MillraceServer
import Testing

/// 64 idle connections, renewed as the broker dropped them, kept `/healthz` out: 0 of 60
/// probes answered. A new connection now replaces the one quiet longest.
@Suite struct HTTPConnectionTableTests {
    @Test func aNewConnectionReplacesTheQuietestAtTheCap() {
        var table = HTTPConnectionTable<Int>(connectionsMax: 3, idleMs: 30_000)
        #expect(table.opened(1, nowMs: 0) == nil)
        #expect(table.opened(2, nowMs: 0) == nil)
        #expect(table.opened(3, nowMs: 0) == nil)
        // 1 finished a request: 2 is now the quietest.
        table.active(1, nowMs: 0)
        #expect(table.opened(4, nowMs: 0) == 2)
        #expect(table.opened(5, nowMs: 0) == 3)
        #expect(table.count == 3)
    }

    /// Holders reconnecting as fast as they are dropped never get the newest connection dropped.
    @Test func renewedHoldersNeverReplaceTheNewest() {
        var table = HTTPConnectionTable<Int>(connectionsMax: 4, idleMs: 30_000)
        for holder in 0..<4 { _ = table.opened(holder, nowMs: 0) }
        let probe = 100
        #expect(table.opened(probe, nowMs: 0) == 0)
        // Three holders come back before the probe's request is read: the probe stays.
        for holder in 200..<203 { #expect(table.opened(holder, nowMs: 0) != probe) }
        #expect(table.idle(nowMs: 29_999).isEmpty)
    }

    @Test func quietConnectionsAreIdleByTheClock() {
        var table = HTTPConnectionTable<Int>(connectionsMax: 8, idleMs: 30_000)
        _ = table.opened(1, nowMs: 0)
        _ = table.opened(2, nowMs: 10_000)
        #expect(table.idle(nowMs: 29_999).isEmpty)
        #expect(table.idle(nowMs: 30_000) == [1])
        table.active(1, nowMs: 30_000)
        #expect(table.idle(nowMs: 40_000) == [2])
        table.closed(2)
        table.active(2, nowMs: 40_000)  // closed: not counted again
        #expect(table.count == 1)
        #expect(table.idle(nowMs: 60_000) == [1])
    }
}

/// Scrape-time gauges are written in one pass, escaped.
@Suite struct PrometheusTextTests {
    @Test func familiesSamplesAndEscapes() {
        var page = PrometheusText()
        page.gauge("up", 1)
        page.gaugeFamily("empty")
        page.gaugeFamily("lag")
        page.sample("lag", [("group", "a\"b\\c\nd"), ("partition", "0")], 12)
        page.sample("lag", [("group", "x")], 0.5)
        #expect(
            String(decoding: page.bytes, as: UTF8.self)
                == "# TYPE up gauge\nup 1\n# TYPE lag gauge\nlag{group=\"a\\\"b\\\\c\\nd\",partition=\"0\"} 12\nlag{group=\"x\"} 0.5\n")
        #expect(PrometheusText.format(-3) == "-3")
        #expect(PrometheusText.format(1e300) == "1e+300")
        #expect(PrometheusText.format(.infinity) == "+Inf")
    }
}

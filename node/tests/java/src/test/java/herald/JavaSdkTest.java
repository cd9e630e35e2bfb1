package herald;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.github.centrifugal.centrifuge.Client;
import io.github.centrifugal.centrifuge.ClientState;
import io.github.centrifugal.centrifuge.ConnectedEvent;
import io.github.centrifugal.centrifuge.ConnectingEvent;
import io.github.centrifugal.centrifuge.DisconnectedEvent;
import io.github.centrifugal.centrifuge.ErrorEvent;
import io.github.centrifugal.centrifuge.EventListener;
import io.github.centrifugal.centrifuge.Options;
import io.github.centrifugal.centrifuge.PublicationEvent;
import io.github.centrifugal.centrifuge.SubscribedEvent;
import io.github.centrifugal.centrifuge.Subscription;
import io.github.centrifugal.centrifuge.SubscriptionEventListener;
import io.github.centrifugal.centrifuge.HistoryOptions;
import io.github.centrifugal.centrifuge.HistoryResult;
import io.github.centrifugal.centrifuge.PresenceStatsResult;
import io.github.centrifugal.centrifuge.Publication;
import io.github.centrifugal.centrifuge.PublishResult;
import io.github.centrifugal.centrifuge.ResultCallback;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * centrifuge-java 0.4.1, the newest on Maven Central, unchanged. It encodes the client
 * protocol v2 in Protobuf only (subprotocol {@code centrifuge-protobuf}, binary frames
 * of length-delimited messages): the conformance cases of the other SDK suites, through
 * Herald's Protobuf encoding. Payloads are bytes; the server API publishes JSON, which
 * reaches a Protobuf client as its JSON text.
 */
class JavaSdkTest {

    /** Records the client events the SDK reports. */
    static final class Recorder extends EventListener {
        final List<Integer> connecting = new CopyOnWriteArrayList<>();
        final List<String> connected = new CopyOnWriteArrayList<>();
        final List<Integer> disconnected = new CopyOnWriteArrayList<>();
        final List<Throwable> errors = new CopyOnWriteArrayList<>();

        @Override
        public void onConnecting(Client client, ConnectingEvent e) {
            connecting.add(e.getCode());
        }

        @Override
        public void onConnected(Client client, ConnectedEvent e) {
            connected.add(e.getClient());
        }

        @Override
        public void onDisconnected(Client client, DisconnectedEvent e) {
            disconnected.add(e.getCode());
        }

        @Override
        public void onError(Client client, ErrorEvent e) {
            errors.add(e.getError());
        }
    }

    /** Records a subscription's events: subscribed, publications (as text). */
    static final class SubRecorder extends SubscriptionEventListener {
        final List<Boolean> subscribed = new CopyOnWriteArrayList<>();
        final List<String> data = new CopyOnWriteArrayList<>();
        final List<Long> offsets = new CopyOnWriteArrayList<>();

        @Override
        public void onSubscribed(Subscription sub, SubscribedEvent e) {
            subscribed.add(true);
        }

        @Override
        public void onPublication(Subscription sub, PublicationEvent e) {
            data.add(new String(e.getData(), StandardCharsets.UTF_8));
            offsets.add(e.getOffset());
        }
    }

    static Client client(Servers s, String user, Recorder r) {
        Options opts = new Options();
        opts.setToken(s.token(user, 3600));
        opts.setTimeout((int) Servers.T_MS);
        opts.setMinReconnectDelay(100);
        opts.setMaxReconnectDelay(200);
        return new Client(s.ws, opts, r);
    }

    /** Waits for a callback's result, failing on its error. */
    static <T> T await(String what, java.util.function.Consumer<ResultCallback<T>> call) throws Exception {
        CompletableFuture<T> f = new CompletableFuture<>();
        call.accept((e, result) -> {
            if (e != null) {
                f.completeExceptionally(e);
            } else {
                f.complete(result);
            }
        });
        try {
            return f.get(Servers.T_MS, TimeUnit.MILLISECONDS);
        } catch (java.util.concurrent.ExecutionException e) {
            throw new AssertionError(what + " failed: " + e.getCause(), e.getCause());
        }
    }

    static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    @ParameterizedTest
    @ValueSource(strings = {"single", "cluster"})
    void connectsSubscribesPublishesAndReadsHistoryAndPresence(String mode) throws Exception {
        try (Servers s = Servers.start(mode)) {
            Recorder r = new Recorder();
            Client c = client(s, "alice", r);
            SubRecorder sr = new SubRecorder();
            Subscription sub = c.newSubscription("java-news", sr);
            c.connect();
            sub.subscribe();
            try {
                Servers.waitFor("connected", Servers.T_MS, () -> !r.connected.isEmpty());
                assertFalse(r.connected.get(0).isEmpty(), "a client id");
                Servers.waitFor("subscribed", Servers.T_MS, () -> !sr.subscribed.isEmpty());

                // A server API publication (JSON) arrives as its JSON text.
                s.api("publish", "{\"channel\":\"java-news\",\"data\":{\"hello\":\"java\"}}");
                Servers.waitFor("the API publication", Servers.T_MS, () -> sr.data.size() == 1);
                assertEquals("{\"hello\":\"java\"}", sr.data.get(0));

                // The SDK's own publication: JSON bytes in, the same bytes out.
                await("publish", (ResultCallback<PublishResult> cb) -> sub.publish(utf8("{\"from\":\"java\"}"), cb));
                Servers.waitFor("the client's publication", Servers.T_MS, () -> sr.data.size() == 2);
                assertEquals("{\"from\":\"java\"}", sr.data.get(1));
                assertTrue(sr.offsets.get(1) > sr.offsets.get(0), "offsets grow: " + sr.offsets);

                HistoryResult h = await("history", (ResultCallback<HistoryResult> cb) ->
                        sub.history(new HistoryOptions.Builder().withLimit(10).build(), cb));
                List<String> texts = new ArrayList<>();
                for (Publication p : h.getPublications()) {
                    texts.add(new String(p.getData(), StandardCharsets.UTF_8));
                }
                assertEquals(List.of("{\"hello\":\"java\"}", "{\"from\":\"java\"}"), texts);
                assertEquals(sr.offsets.get(1).longValue(), h.getOffset(), "history position");

                PresenceStatsResult stats = await("presence stats",
                        (ResultCallback<PresenceStatsResult> cb) -> sub.presenceStats(cb));
                assertEquals(1, stats.getNumClients());
                assertEquals(1, stats.getNumUsers());

                assertEquals(List.of(), r.errors, "client errors");
                assertEquals(ClientState.CONNECTED, c.getState());
            } finally {
                c.close(Servers.T_MS);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"single"})
    void aServerApiDisconnectWithATerminalCodeStopsTheSdk(String mode) throws Exception {
        try (Servers s = Servers.start(mode)) {
            Recorder r = new Recorder();
            Client c = client(s, "bob", r);
            c.connect();
            try {
                Servers.waitFor("connected", Servers.T_MS, () -> !r.connected.isEmpty());
                s.api("disconnect", "{\"user\":\"bob\",\"disconnect\":{\"code\":4501,\"reason\":\"banned\"}}");
                // The disconnect push and close reach the SDK in Protobuf: it stops.
                Servers.waitFor("disconnected", Servers.T_MS, () -> !r.disconnected.isEmpty());
                assertEquals(List.of(4501), r.disconnected, "disconnect codes");
                Thread.sleep(1000);
                assertEquals(1, r.connected.size(), "never reconnected");
                assertEquals(ClientState.DISCONNECTED, c.getState());
            } finally {
                c.close(Servers.T_MS);
            }
        }
    }
}

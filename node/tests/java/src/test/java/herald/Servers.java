package herald;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Base64;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * Real Herald servers started by the Python harness's node/tests/py/sdkcluster.py (the
 * pytest suite's ports, settings and clean-up): {@code single} or {@code cluster}.
 * Closing this, or this JVM exiting, ends the launcher's input and it stops them all.
 */
final class Servers implements AutoCloseable {
    /** Default timeout of one wait, ms (HERALD_TEST_TIMEOUT is seconds, as in pytest). */
    static final long T_MS = (long) (1000 * Double.parseDouble(envOr("HERALD_TEST_TIMEOUT", "10")));

    static final Path REPO_ROOT = Path.of(System.getProperty("user.dir")).resolve("../../..").normalize();

    final String ws;
    final String api;
    final String secret;
    final String apiKey;
    private final Process proc;

    private Servers(Process proc, String description) {
        this.proc = proc;
        this.ws = field(description, "ws");
        this.api = field(description, "api");
        this.secret = field(description, "secret");
        this.apiKey = field(description, "api_key");
    }

    static String envOr(String name, String def) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? def : v;
    }

    static Servers start(String mode) throws Exception {
        ProcessBuilder pb = new ProcessBuilder(
                envOr("HERALD_PY", REPO_ROOT.resolve("target/py-venv/bin/python").toString()),
                REPO_ROOT.resolve("node/tests/py/sdkcluster.py").toString(), mode);
        pb.environment().put("HERALD_NODE_BIN",
                envOr("HERALD_NODE_BIN", REPO_ROOT.resolve("target/debug/herald-node").toString()));
        pb.environment().put("HERALD_ROUTER_BIN",
                envOr("HERALD_ROUTER_BIN", REPO_ROOT.resolve("target/debug/herald-router").toString()));
        pb.redirectError(ProcessBuilder.Redirect.INHERIT);
        Process proc = pb.start();
        BufferedReader out = new BufferedReader(new InputStreamReader(proc.getInputStream(), StandardCharsets.UTF_8));
        CompletableFuture<String> first = CompletableFuture.supplyAsync(() -> {
            try {
                return out.readLine();
            } catch (IOException e) {
                return null;
            }
        });
        String line;
        try {
            line = first.get(6 * T_MS, TimeUnit.MILLISECONDS);
        } catch (Exception e) {
            proc.destroyForcibly();
            throw new IllegalStateException("sdkcluster.py printed nothing in time", e);
        }
        if (line == null) {
            proc.destroyForcibly();
            throw new IllegalStateException("sdkcluster.py exited with " + proc.waitFor());
        }
        return new Servers(proc, line);
    }

    private static String field(String json, String name) {
        Matcher m = Pattern.compile("\"" + name + "\": \"([^\"]*)\"").matcher(json);
        if (!m.find()) {
            throw new IllegalStateException("no " + name + " in " + json);
        }
        return m.group(1);
    }

    /** An HS256 connection token for {@code user}, expiring in {@code expIn} seconds. */
    String token(String user, long expIn) {
        Base64.Encoder b64 = Base64.getUrlEncoder().withoutPadding();
        long exp = System.currentTimeMillis() / 1000 + expIn;
        String unsigned = b64.encodeToString("{\"alg\":\"HS256\",\"typ\":\"JWT\"}".getBytes(StandardCharsets.UTF_8))
                + "." + b64.encodeToString(("{\"sub\":\"" + user + "\",\"exp\":" + exp + "}").getBytes(StandardCharsets.UTF_8));
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(secret.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
            return unsigned + "." + b64.encodeToString(mac.doFinal(unsigned.getBytes(StandardCharsets.UTF_8)));
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    /** POST {@code <api>/<method>} with a JSON body; fails unless the node answers 200. */
    String api(String method, String body) throws Exception {
        HttpRequest req = HttpRequest.newBuilder(URI.create(api + "/" + method))
                .timeout(Duration.ofMillis(T_MS))
                .header("X-API-Key", apiKey)
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body))
                .build();
        HttpResponse<String> r = HttpClient.newHttpClient().send(req, HttpResponse.BodyHandlers.ofString());
        if (r.statusCode() != 200 || r.body().contains("\"error\"")) {
            throw new AssertionError("api " + method + ": " + r.statusCode() + " " + r.body());
        }
        return r.body();
    }

    /** Polls {@code cond} every 10 ms; fails after {@code timeoutMs} naming {@code what}. */
    static void waitFor(String what, long timeoutMs, BooleanSupplier cond) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        while (!cond.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out after " + timeoutMs + " ms waiting for " + what);
            }
            Thread.sleep(10);
        }
    }

    @Override
    public void close() throws Exception {
        proc.getOutputStream().close(); // end of input: the launcher stops every process
        if (!proc.waitFor(3 * T_MS, TimeUnit.MILLISECONDS)) {
            proc.destroyForcibly().waitFor();
        }
    }
}

// portal_protocol.h: the Portal MQTT message logic of portal_device.ino, in plain C++17.
//
// No Arduino header and no library: the same file is compiled by the Arduino IDE for the ESP32
// and by g++ on a PC (tests/examples/test_arduino_header.py runs its tests), so what is tested
// there is what the board runs. It holds:
//   - Topics:     the topic names of one device (portal/dev-7/up/readings, ...);
//   - JsonWriter: a small JSON writer into a fixed buffer (escapes strings, refuses NaN);
//   - Outbox:     readings batches, each with a key of its own, kept until the portal
//                 acknowledges them on down/acks, sent again (same bytes) when the answer is
//                 late;
//   - Journal:    the commands already run, with their results, so that a command the portal
//                 pushes again is answered again and never run twice (saved to flash by the
//                 sketch, so a restart remembers);
//   - buildHeartbeat / buildResult / formatUtc.
// Parsing what arrives is left to ArduinoJson in the sketch; the parsed fields come here.
// No heap: everything lives in fixed buffers whose sizes are below.

#ifndef PORTAL_PROTOCOL_H
#define PORTAL_PROTOCOL_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace portal {

constexpr size_t TOPIC_MAX = 96;     // a topic name, with its NUL
constexpr size_t KEY_MAX = 32;       // a batch's key
constexpr size_t BATCH_MAX = 512;    // one readings message (PubSubClient's buffer: 1024)
constexpr size_t RESULT_MAX = 160;   // a command's result object, e.g. {"relay":"on"}
constexpr size_t MESSAGE_MAX = 256;  // a result or heartbeat message
constexpr size_t TIME_MAX = 21;      // "2026-01-31T12:00:00Z" and its NUL
constexpr long long CLOCK_SET_AFTER = 1704067200;  // 2024-01-01: before that, the clock is unset

// ---- JSON ----------------------------------------------------------------------------------

// Writes one JSON value into out[0..capacity). Once anything does not fit (or a number is not
// finite), ok() is false for good and the text must not be used; out is always NUL-terminated.
class JsonWriter {
 public:
  JsonWriter(char* out, size_t capacity) : out_(out), capacity_(capacity) {
    if (capacity_ == 0) {
      ok_ = false;
    } else {
      out_[0] = '\0';
    }
  }

  JsonWriter& beginObject() { return open('{'); }
  JsonWriter& endObject() { return close('}'); }
  JsonWriter& beginArray() { return open('['); }
  JsonWriter& endArray() { return close(']'); }

  JsonWriter& key(const char* name) {
    separate();
    quoted(name);
    put(':');
    afterKey_ = true;
    return *this;
  }

  JsonWriter& string(const char* text) {
    separate();
    quoted(text);
    return *this;
  }

  JsonWriter& number(double value) {
    if (!std::isfinite(value)) {
      ok_ = false;  // JSON has no NaN or Infinity (and the portal refuses them)
      return *this;
    }
    char text[32];
    std::snprintf(text, sizeof text, "%.10g", value);
    separate();
    puts(text);
    return *this;
  }

  JsonWriter& integer(long value) {
    char text[24];
    std::snprintf(text, sizeof text, "%ld", value);
    separate();
    puts(text);
    return *this;
  }

  JsonWriter& boolean(bool value) {
    separate();
    puts(value ? "true" : "false");
    return *this;
  }

  // JSON text made elsewhere (e.g. a result object), written as it is.
  JsonWriter& raw(const char* json) {
    separate();
    puts(json);
    return *this;
  }

  bool ok() const { return ok_ && depth_ == 0; }
  size_t length() const { return length_; }

 private:
  static constexpr int MAX_DEPTH = 8;

  JsonWriter& open(char bracket) {
    separate();
    put(bracket);
    if (depth_ >= MAX_DEPTH) {
      ok_ = false;
      return *this;
    }
    first_[depth_++] = true;
    return *this;
  }

  JsonWriter& close(char bracket) {
    if (depth_ == 0 || afterKey_) {
      ok_ = false;
      return *this;
    }
    --depth_;
    put(bracket);
    return *this;
  }

  // A comma before every item but the first of its object or array; none after a key.
  void separate() {
    if (afterKey_) {
      afterKey_ = false;
      return;
    }
    if (depth_ > 0) {
      if (!first_[depth_ - 1]) put(',');
      first_[depth_ - 1] = false;
    }
  }

  void quoted(const char* text) {
    if (text == nullptr) {
      ok_ = false;
      return;
    }
    put('"');
    for (const char* c = text; *c != '\0'; ++c) {
      const unsigned char byte = static_cast<unsigned char>(*c);
      if (byte == '"' || byte == '\\') {
        put('\\');
        put(*c);
      } else if (byte < 0x20) {
        char escaped[8];
        std::snprintf(escaped, sizeof escaped, "\\u%04x", byte);
        puts(escaped);
      } else {
        put(*c);  // UTF-8 passes as it is
      }
    }
    put('"');
  }

  void puts(const char* text) {
    for (const char* c = text; *c != '\0'; ++c) put(*c);
  }

  void put(char c) {
    if (!ok_) return;
    if (length_ + 1 >= capacity_) {  // keep room for the NUL
      ok_ = false;
      return;
    }
    out_[length_++] = c;
    out_[length_] = '\0';
  }

  char* out_;
  size_t capacity_;
  size_t length_ = 0;
  bool ok_ = true;
  bool afterKey_ = false;
  int depth_ = 0;
  bool first_[MAX_DEPTH] = {};
};

// ---- topics --------------------------------------------------------------------------------

// The topics of one device: <prefix>/dev-<id>/... The MQTT client id and user name are both
// dev-<id>; the password is the device's token.
struct Topics {
  enum Kind { OTHER, COMMAND, ACK };

  char clientId[24] = "";
  char root[TOPIC_MAX] = "";
  char status[TOPIC_MAX] = "";     // up/status: retained "online", last will "offline"
  char heartbeat[TOPIC_MAX] = "";  // up/heartbeat
  char readings[TOPIC_MAX] = "";   // up/readings
  char down[TOPIC_MAX] = "";       // down/#: what to subscribe to
  char commands[TOPIC_MAX] = "";   // down/commands
  char acks[TOPIC_MAX] = "";       // down/acks

  // False when the prefix is empty, holds a wildcard, or the names would not fit.
  bool set(const char* prefix, long deviceId) {
    if (prefix == nullptr || prefix[0] == '\0' || deviceId < 1 || std::strpbrk(prefix, "#+")) {
      return false;
    }
    bool fits = written(std::snprintf(clientId, sizeof clientId, "dev-%ld", deviceId),
                        sizeof clientId);
    fits = fits && written(std::snprintf(root, sizeof root, "%s/%s", prefix, clientId),
                           sizeof root);
    fits = fits && join(status, root, "/up/status");
    fits = fits && join(heartbeat, root, "/up/heartbeat");
    fits = fits && join(readings, root, "/up/readings");
    fits = fits && join(down, root, "/down/#");
    fits = fits && join(commands, root, "/down/commands");
    fits = fits && join(acks, root, "/down/acks");
    return fits;
  }

  // up/results/<command id>, where a command's result goes.
  bool result(char* out, size_t size, long commandId) const {
    return written(std::snprintf(out, size, "%s/up/results/%ld", root, commandId), size);
  }

  Kind kind(const char* topic) const {
    if (topic == nullptr) return OTHER;
    if (std::strcmp(topic, commands) == 0) return COMMAND;
    if (std::strcmp(topic, acks) == 0) return ACK;
    return OTHER;
  }

 private:
  static bool written(int length, size_t size) {
    return length > 0 && static_cast<size_t>(length) < size;
  }

  static bool join(char (&out)[TOPIC_MAX], const char* head, const char* tail) {
    return written(std::snprintf(out, sizeof out, "%s%s", head, tail), sizeof out);
  }
};

// ---- time ----------------------------------------------------------------------------------

// Seconds since 1970 (UTC) as RFC 3339 text, "2026-01-31T12:00:00Z". False (and "") while the
// clock is not set yet (before 2024): the portal then stamps readings when they arrive.
inline bool formatUtc(char* out, size_t size, long long epochSeconds) {
  if (size > 0) out[0] = '\0';
  if (epochSeconds < CLOCK_SET_AFTER || size < TIME_MAX) return false;
  long long days = epochSeconds / 86400;
  const long long secondOfDay = epochSeconds % 86400;
  // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm, proleptic Gregorian).
  days += 719468;
  const long long era = days / 146097;
  const long long dayOfEra = days - era * 146097;
  const long long yearOfEra =
      (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146096) / 365;
  const long long dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100);
  const long long monthIndex = (5 * dayOfYear + 2) / 153;
  const int day = static_cast<int>(dayOfYear - (153 * monthIndex + 2) / 5 + 1);
  const int month = static_cast<int>(monthIndex < 10 ? monthIndex + 3 : monthIndex - 9);
  const int year = static_cast<int>(yearOfEra + era * 400 + (month <= 2 ? 1 : 0));
  const int second = static_cast<int>(secondOfDay);
  const int written = std::snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02dZ", year, month, day,
                                    second / 3600, second / 60 % 60, second % 60);
  if (written != static_cast<int>(TIME_MAX) - 1) {  // a year past 9999
    out[0] = '\0';
    return false;
  }
  return true;
}

// ---- what the board sends ------------------------------------------------------------------

// {"firmware":"1.2.0"} for up/heartbeat.
inline bool buildHeartbeat(char* out, size_t size, const char* firmware) {
  JsonWriter json(out, size);
  json.beginObject().key("firmware").string(firmware).endObject();
  return json.ok();
}

// {"status":"succeeded","result":{...}} for up/results/<id>; result is a JSON object's text.
inline bool buildResult(char* out, size_t size, bool succeeded, const char* result) {
  JsonWriter json(out, size);
  json.beginObject().key("status").string(succeeded ? "succeeded" : "failed");
  json.key("result").raw(result != nullptr && result[0] == '{' ? result : "{}").endObject();
  return json.ok();
}

// {"error":"..."}: a result object saying why a command failed.
inline bool buildError(char* out, size_t size, const char* message) {
  JsonWriter json(out, size);
  json.beginObject().key("error").string(message).endObject();
  return json.ok();
}

// 1-64 characters of a-z 0-9 _ . - (the portal's rule for metric names).
inline bool validMetric(const char* metric) {
  if (metric == nullptr) return false;
  size_t length = 0;
  for (const char* c = metric; *c != '\0'; ++c, ++length) {
    const bool allowed = (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' ||
                         *c == '.' || *c == '-';
    if (!allowed || length >= 64) return false;
  }
  return length > 0;
}

struct Reading {
  const char* metric;
  double value;
};

// Readings batches waiting for the portal's answer, oldest first. Each gets the key
// <boot>-<n> (boot: a random word drawn at start, so keys differ from one boot to the next),
// and keeps its bytes: sent again, it is the same message, which the portal stores once.
// Only the oldest is in flight; when the outbox is full, the oldest is dropped.
class Outbox {
 public:
  static constexpr int SLOTS = 8;

  // boot: up to 16 printable characters, e.g. 8 hex digits of a random number.
  bool begin(const char* boot) {
    head_ = count_ = 0;
    sequence_ = dropped_ = 0;
    if (boot == nullptr || boot[0] == '\0' || std::strlen(boot) > 16) return false;
    for (const char* c = boot; *c != '\0'; ++c) {
      if (*c < 0x21 || *c > 0x7e || *c == '"' || *c == '\\') return false;
    }
    std::snprintf(boot_, sizeof boot_, "%s", boot);
    return true;
  }

  // Queue one batch: {"readings":[{"metric":..,"value":..,"ts":..},..],"key":".."}. ts is
  // RFC 3339 text or nullptr (the portal's time). False, and nothing queued, for no readings,
  // a bad metric name, a value that is not a finite number, or a batch over BATCH_MAX bytes.
  bool add(const Reading* items, size_t count, const char* ts) {
    if (boot_[0] == '\0' || items == nullptr || count == 0) return false;
    for (size_t i = 0; i < count; ++i) {
      if (!validMetric(items[i].metric) || !std::isfinite(items[i].value)) return false;
    }
    char key[KEY_MAX];
    std::snprintf(key, sizeof key, "%s-%lu", boot_, sequence_ + 1);
    char json[BATCH_MAX];
    JsonWriter out(json, sizeof json);
    out.beginObject().key("readings").beginArray();
    for (size_t i = 0; i < count; ++i) {
      out.beginObject().key("metric").string(items[i].metric).key("value").number(items[i].value);
      if (ts != nullptr) out.key("ts").string(ts);
      out.endObject();
    }
    out.endArray().key("key").string(key).endObject();
    if (!out.ok()) return false;
    ++sequence_;
    if (count_ == SLOTS) {  // full: the oldest goes
      head_ = (head_ + 1) % SLOTS;
      --count_;
      ++dropped_;
    }
    Slot& slot = slots_[(head_ + count_) % SLOTS];
    std::memcpy(slot.key, key, std::strlen(key) + 1);
    std::memcpy(slot.json, json, out.length() + 1);
    slot.sent = false;
    slot.sentAt = 0;
    ++count_;
    return true;
  }

  // The message to publish now on up/readings, or nullptr: the oldest batch when it was never
  // sent, or when ackTimeoutMs went by without its answer. It counts as sent at nowMs
  // (millis(); its wrap-around after 49 days is fine).
  const char* due(uint32_t nowMs, uint32_t ackTimeoutMs) {
    if (count_ == 0) return nullptr;
    Slot& slot = slots_[head_];
    if (slot.sent && static_cast<uint32_t>(nowMs - slot.sentAt) < ackTimeoutMs) return nullptr;
    slot.sent = true;
    slot.sentAt = nowMs;
    return slot.json;
  }

  // After a reconnect: the oldest goes again at once.
  void resendNow() {
    if (count_ > 0) slots_[head_].sent = false;
  }

  // The portal answered on down/acks for a readings message with this key (stored, or
  // refused: a refused batch would be refused again). True when that settled the oldest.
  bool acked(const char* key) {
    if (count_ == 0 || key == nullptr || std::strcmp(slots_[head_].key, key) != 0) return false;
    head_ = (head_ + 1) % SLOTS;
    --count_;
    return true;
  }

  int pending() const { return count_; }
  unsigned long dropped() const { return dropped_; }
  const char* oldestKey() const { return count_ > 0 ? slots_[head_].key : nullptr; }

 private:
  struct Slot {
    char key[KEY_MAX];
    char json[BATCH_MAX];
    bool sent;
    uint32_t sentAt;
  };
  Slot slots_[SLOTS] = {};
  int head_ = 0;
  int count_ = 0;
  unsigned long sequence_ = 0;
  unsigned long dropped_ = 0;
  char boot_[17] = "";
};

// ---- commands already run -------------------------------------------------------------------

// The last SLOTS commands run, with their results, and the highest id it forgot to make room.
// decide() says what to do with a command that arrives; report() gives the message for
// up/results/<id>. The sketch saves the journal (save()/load()) to flash before a command runs
// and after it ran, so a command cut short by a restart is reported failed, not run again.
class Journal {
 public:
  static constexpr int SLOTS = 16;
  static constexpr size_t SAVED_MAX = (SLOTS + 1) * (16 + RESULT_MAX);  // save()'s text

  enum Decision {
    RUN,           // new: started(), run it, finished(), report()
    REPORT_AGAIN,  // ran already (or was cut short by a restart): report() again, do not run
    TOO_OLD        // not remembered, but no newer than an id it forgot: it may have run, so
                   // it is not run; report() says so
  };

  Decision decide(long id) const {
    if (find(id) != nullptr) return REPORT_AGAIN;
    return id <= forgotten_ ? TOO_OLD : RUN;
  }

  // Remember that `id` is about to run (the entry remembered longest makes room).
  void started(long id) {
    Entry* entry = find(id);
    if (entry == nullptr) {
      if (count_ == SLOTS) {
        if (entries_[0].id > forgotten_) forgotten_ = entries_[0].id;
        std::memmove(&entries_[0], &entries_[1], sizeof(Entry) * (SLOTS - 1));
        --count_;
      }
      entry = &entries_[count_++];
    }
    entry->id = id;
    entry->state = RUNNING;
    entry->result[0] = '\0';
  }

  // Its outcome; result is a JSON object's text (too long or not an object: {}).
  void finished(long id, bool succeeded, const char* result) {
    Entry* entry = find(id);
    if (entry == nullptr) {
      started(id);
      entry = find(id);
    }
    entry->state = succeeded ? SUCCEEDED : FAILED;
    const bool usable = result != nullptr && result[0] == '{' && std::strlen(result) < RESULT_MAX &&
                        std::strchr(result, '\n') == nullptr;
    std::snprintf(entry->result, RESULT_MAX, "%s", usable ? result : "{}");
  }

  // The message for up/results/<id>, whatever decide() said.
  bool report(long id, char* out, size_t size) const {
    const Entry* entry = find(id);
    char error[RESULT_MAX];
    if (entry == nullptr) {
      buildError(error, sizeof error, "too old to tell whether it ran; not run");
      return buildResult(out, size, false, error);
    }
    if (entry->state == RUNNING) {
      buildError(error, sizeof error, "interrupted by a restart; not run again");
      return buildResult(out, size, false, error);
    }
    return buildResult(out, size, entry->state == SUCCEEDED, entry->result);
  }

  // As text: the highest id forgotten on the first line, then one line per command,
  // "<id> <r|s|f> <result>" (running, succeeded, failed), the one remembered longest first.
  bool save(char* out, size_t size) const {
    if (size == 0) return false;
    int written = std::snprintf(out, size, "%ld\n", forgotten_);
    if (written < 0 || static_cast<size_t>(written) >= size) {
      out[0] = '\0';
      return false;
    }
    size_t used = static_cast<size_t>(written);
    for (int i = 0; i < count_; ++i) {
      const char state = STATES[entries_[i].state];
      written = std::snprintf(out + used, size - used, "%ld %c %s\n", entries_[i].id, state,
                              entries_[i].result);
      if (written < 0 || static_cast<size_t>(written) >= size - used) {
        out[used] = '\0';
        return false;
      }
      used += static_cast<size_t>(written);
    }
    return true;
  }

  // What save() wrote. False (and an empty journal) when the text is not that.
  bool load(const char* text) {
    count_ = 0;
    forgotten_ = 0;
    if (text == nullptr) return false;
    char* after = nullptr;
    const long forgotten = std::strtol(text, &after, 10);
    if (after == text || forgotten < 0 || *after != '\n') return fail();
    forgotten_ = forgotten;
    const char* line = after + 1;
    while (*line != '\0') {
      const char* end = std::strchr(line, '\n');
      if (end == nullptr || count_ == SLOTS) return fail();
      const long id = std::strtol(line, &after, 10);
      if (after == line || id < 1 || after + 3 > end || after[0] != ' ' || after[2] != ' ') {
        return fail();
      }
      const char* state = after[1] == '\0' ? nullptr : std::strchr(STATES, after[1]);
      const size_t length = static_cast<size_t>(end - (after + 3));
      if (state == nullptr || length >= RESULT_MAX || find(id) != nullptr) return fail();
      Entry& entry = entries_[count_++];
      entry.id = id;
      entry.state = static_cast<State>(state - STATES);
      std::memcpy(entry.result, after + 3, length);
      entry.result[length] = '\0';
      line = end + 1;
    }
    return true;
  }

  int size() const { return count_; }
  long forgotten() const { return forgotten_; }

 private:
  enum State : uint8_t { RUNNING = 0, SUCCEEDED = 1, FAILED = 2 };
  static constexpr const char* STATES = "rsf";  // State as a letter in save()'s text
  struct Entry {
    long id;
    State state;
    char result[RESULT_MAX];
  };

  bool fail() {
    count_ = 0;
    forgotten_ = 0;
    return false;
  }

  const Entry* find(long id) const {
    for (int i = 0; i < count_; ++i) {
      if (entries_[i].id == id) return &entries_[i];
    }
    return nullptr;
  }
  Entry* find(long id) {
    return const_cast<Entry*>(static_cast<const Journal*>(this)->find(id));
  }

  Entry entries_[SLOTS] = {};
  int count_ = 0;
  long forgotten_ = 0;
};

}  // namespace portal

#endif  // PORTAL_PROTOCOL_H

// An ESP32 (Arduino core) talking to Portal over MQTT: readings, a heartbeat, and commands that
// switch a relay. See README.md beside this folder for wiring and flashing.
//
// Libraries (Arduino IDE: Tools > Manage Libraries...):
//   - PubSubClient by Nick O'Leary (2.8)
//   - ArduinoJson by Benoit Blanchon (7.x)
// Board: an ESP32 (Tools > Board > esp32 > "ESP32 Dev Module" or yours), with the esp32 boards
// package by Espressif installed.
//
// The message logic (topics, the JSON it sends, batches kept until acknowledged, commands run
// once) is in portal_protocol.h, which is plain C++ and tested on a PC. This file is the glue:
// Wi-Fi, the MQTT connection, the sensor, the relay, flash.

#include <ArduinoJson.h>
#include <Preferences.h>
#include <PubSubClient.h>
#include <WiFi.h>
#include <time.h>

#include "portal_protocol.h"

// ---- CHANGE HERE: your settings -------------------------------------------------------------
const char* WIFI_SSID = "my-wifi";               // 2.4 GHz
const char* WIFI_PASSWORD = "my-wifi-password";
const char* BROKER_HOST = "192.168.1.10";        // the portal's Mosquitto, as the board sees it
const uint16_t BROKER_PORT = 1883;
const long DEVICE_ID = 7;                        // the device's number in the portal
const char* DEVICE_TOKEN = "pd_paste-the-token-here";  // shown once at creation / rotation
const char* TOPIC_PREFIX = "portal";             // PORTAL_MQTT_TOPIC_PREFIX, if it was changed
const char* FIRMWARE = "arduino-example 1.0.0";  // shown on the device's page

const int RELAY_PIN = 5;     // the relay module's IN (or an LED with a resistor to try it out)
const int RELAY_ON = HIGH;   // LOW for a relay module that switches on a low input (active low)
const int RELAY_OFF = RELAY_ON == HIGH ? LOW : HIGH;
const int SENSOR_PIN = 34;   // a TMP36's middle leg (an ADC1 pin: 32-39)
const uint32_t READ_EVERY_MS = 60000;       // a batch of readings
const uint32_t HEARTBEAT_EVERY_MS = 30000;  // "still here", with FIRMWARE
const uint32_t ACK_TIMEOUT_MS = 30000;      // a batch without an answer by then goes again

WiFiClient wifiClient;
PubSubClient mqtt(wifiClient);
Preferences flash;
portal::Topics topics;
portal::Outbox outbox;    // readings batches until the portal acknowledges them
portal::Journal journal;  // the commands already run, with their results

uint32_t nextRead = 0;
uint32_t nextHeartbeat = 0;
uint32_t nextAttempt = 0;
uint32_t retryPauseMs = 1000;
uint32_t relayOffAt = 0;  // millis() when relay.on's "seconds" are up (0: no timer)

// Commands are noted in the MQTT callback and run from loop(): PubSubClient reuses one buffer
// for what it receives and what it sends, so nothing is published from inside the callback.
struct PendingCommand {
  bool waiting;
  long id;
  char action[48];
  double seconds;  // payload "seconds" of relay.on, 0 when absent
};
PendingCommand inbox[4];

// ---- CHANGE HERE: your sensors --------------------------------------------------------------
// Fills up to `room` readings; returns how many. Metric names: 1-64 of a-z 0-9 _ . -
size_t readSensors(portal::Reading* readings, size_t room) {
  size_t count = 0;
  const uint32_t millivolts = analogReadMilliVolts(SENSOR_PIN);
  if (count < room) readings[count++] = {"temperature", (millivolts - 500.0) / 10.0};  // TMP36
  if (count < room && WiFi.status() == WL_CONNECTED) {
    readings[count++] = {"wifi_rssi", static_cast<double>(WiFi.RSSI())};
  }
  return count;
}

// ---- CHANGE HERE: your commands -------------------------------------------------------------
// Runs one action; writes the result object (JSON text) to `result` and returns true when it
// succeeded.
bool runAction(const PendingCommand& command, char* result, size_t size) {
  if (strcmp(command.action, "relay.on") == 0) {
    if (command.seconds < 0) {
      portal::buildError(result, size, "seconds must be a positive number");
      return false;
    }
    digitalWrite(RELAY_PIN, RELAY_ON);
    relayOffAt = 0;
    portal::JsonWriter json(result, size);
    json.beginObject().key("relay").string("on");
    if (command.seconds > 0) {
      relayOffAt = millis() + static_cast<uint32_t>(command.seconds * 1000);
      if (relayOffAt == 0) relayOffAt = 1;
      json.key("off_after_s").number(command.seconds);
    }
    json.endObject();
    return true;
  }
  if (strcmp(command.action, "relay.off") == 0) {
    digitalWrite(RELAY_PIN, RELAY_OFF);
    relayOffAt = 0;
    snprintf(result, size, "{\"relay\":\"off\"}");
    return true;
  }
  char message[96];
  snprintf(message, sizeof message, "unknown action: %s", command.action);
  portal::buildError(result, size, message);
  return false;
}

// ---- flash ----------------------------------------------------------------------------------

void saveJournal() {
  static char text[portal::Journal::SAVED_MAX];
  if (journal.save(text, sizeof text)) flash.putString("ran", text);
}

// ---- what arrives ---------------------------------------------------------------------------

void onMessage(char* topic, byte* payload, unsigned int length) {
  JsonDocument doc;  // ArduinoJson 7: copies what it parses, so `payload` may be reused after
  if (deserializeJson(doc, payload, length)) {
    Serial.printf("[portal] not JSON on %s\n", topic);
    return;
  }
  switch (topics.kind(topic)) {
    case portal::Topics::COMMAND: {
      if (!doc["id"].is<long>()) return;
      for (PendingCommand& slot : inbox) {
        if (slot.waiting) continue;
        slot.id = doc["id"].as<long>();
        snprintf(slot.action, sizeof slot.action, "%s", doc["action"] | "");
        slot.seconds = 0;  // none given
        JsonVariantConst seconds = doc["payload"]["seconds"];
        if (!seconds.isNull()) {
          const double value = seconds.is<double>() ? seconds.as<double>() : -1;
          slot.seconds = value > 0 ? value : -1;  // -1: not a positive number
        }
        slot.waiting = true;
        return;
      }
      // All slots busy: dropped here; the portal pushes it again when its lease runs out.
      Serial.println("[portal] too many commands at once; one will come again");
      return;
    }
    case portal::Topics::ACK: {
      const char* what = doc["topic"] | "";
      const char* key = doc["key"] | "";
      const bool refused = !doc["error"].isNull();
      if (strcmp(what, "readings") == 0 && outbox.acked(key)) {
        if (refused) {
          Serial.printf("[portal] readings %s refused: %s\n", key,
                        doc["error"]["message"] | "?");
        } else {
          Serial.printf("[portal] readings %s stored (%d)\n", key, doc["accepted"] | 0);
        }
      } else if (refused) {
        Serial.printf("[portal] %s refused: %s\n", what, doc["error"]["message"] | "?");
      }
      return;
    }
    default:
      return;
  }
}

void runCommands() {
  for (PendingCommand& command : inbox) {
    if (!command.waiting) continue;
    switch (journal.decide(command.id)) {
      case portal::Journal::RUN: {
        Serial.printf("[portal] running command %ld: %s\n", command.id, command.action);
        journal.started(command.id);
        saveJournal();  // on flash before it runs: a restart now does not run it again
        char result[portal::RESULT_MAX];
        const bool succeeded = runAction(command, result, sizeof result);
        journal.finished(command.id, succeeded, result);
        saveJournal();
        break;
      }
      case portal::Journal::REPORT_AGAIN:
        Serial.printf("[portal] command %ld already ran: reporting its result again\n",
                      command.id);
        break;
      case portal::Journal::TOO_OLD:
        Serial.printf("[portal] command %ld may have run before: not run\n", command.id);
        break;
    }
    char topic[portal::TOPIC_MAX];
    char message[portal::MESSAGE_MAX];
    if (topics.result(topic, sizeof topic, command.id) &&
        journal.report(command.id, message, sizeof message)) {
      mqtt.publish(topic, message);  // lost? the portal pushes the command again: reported again
    }
    command.waiting = false;
  }
}

// What goes on whether the portal can be reached or not: the relay's timer, the samples (kept,
// up to portal::Outbox::SLOTS batches, until they can be sent).
void tick() {
  const uint32_t now = millis();
  if (relayOffAt != 0 && static_cast<int32_t>(now - relayOffAt) >= 0) {
    digitalWrite(RELAY_PIN, RELAY_OFF);
    relayOffAt = 0;
    Serial.println("[portal] relay off (its time ran out)");
  }
  if (static_cast<int32_t>(now - nextRead) >= 0) {
    nextRead = now + READ_EVERY_MS;
    portal::Reading readings[8];
    const size_t count = readSensors(readings, 8);
    char at[portal::TIME_MAX];
    const bool clockSet = portal::formatUtc(at, sizeof at, static_cast<long long>(time(nullptr)));
    if (count > 0 && !outbox.add(readings, count, clockSet ? at : nullptr)) {
      Serial.println("[portal] a sample the portal would refuse (name or value): skipped");
    }
  }
}

// ---- connecting -----------------------------------------------------------------------------

bool connectWifi() {
  if (WiFi.status() == WL_CONNECTED) return true;
  Serial.printf("[portal] connecting to Wi-Fi %s\n", WIFI_SSID);
  WiFi.mode(WIFI_STA);
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  for (int i = 0; i < 200 && WiFi.status() != WL_CONNECTED; ++i) {  // up to 20 s
    tick();
    delay(100);
  }
  if (WiFi.status() != WL_CONNECTED) return false;
  Serial.printf("[portal] Wi-Fi up: %s\n", WiFi.localIP().toString().c_str());
  configTime(0, 0, "pool.ntp.org");  // UTC; readings go without a time until it is set
  return true;
}

bool connectMqtt() {
  // Will: the broker says "offline" (retained) for the board when it vanishes.
  if (!mqtt.connect(topics.clientId, topics.clientId, DEVICE_TOKEN, topics.status, 1, true,
                    "offline")) {
    const int state = mqtt.state();
    if (state == MQTT_CONNECT_BAD_CREDENTIALS || state == MQTT_CONNECT_UNAUTHORIZED) {
      Serial.printf("[portal] the broker refused %s: check DEVICE_ID and DEVICE_TOKEN\n",
                    topics.clientId);
    } else {
      Serial.printf("[portal] no MQTT connection (state %d)\n", state);
    }
    return false;
  }
  // Subscribed before saying online: the portal pushes queued commands at "online".
  mqtt.subscribe(topics.down, 1);
  mqtt.publish(topics.status, "online", true);
  Serial.printf("[portal] connected to %s as %s\n", BROKER_HOST, topics.clientId);
  outbox.resendNow();  // whatever was in flight goes again
  nextHeartbeat = millis();
  return true;
}

// ---- setup and loop -------------------------------------------------------------------------

void setup() {
  Serial.begin(115200);
  pinMode(RELAY_PIN, OUTPUT);
  digitalWrite(RELAY_PIN, RELAY_OFF);
  analogSetAttenuation(ADC_11db);  // measure up to about 3.1 V

  if (!topics.set(TOPIC_PREFIX, DEVICE_ID)) {
    Serial.println("[portal] TOPIC_PREFIX or DEVICE_ID is not right: stopped");
    while (true) delay(1000);
  }
  // Batch keys are <boot>-1, <boot>-2, ...: <boot> is drawn anew at each start, from the
  // hardware random number generator (truly random once the radio is on, hence WiFi.mode).
  WiFi.mode(WIFI_STA);
  const unsigned long drawn = (static_cast<unsigned long>(random(0x10000)) << 16) |
                              static_cast<unsigned long>(random(0x10000));
  char boot[9];
  snprintf(boot, sizeof boot, "%08lx", drawn);
  outbox.begin(boot);

  flash.begin("portal", false);
  journal.load(flash.getString("ran", "").c_str());  // nothing saved yet: an empty journal

  mqtt.setServer(BROKER_HOST, BROKER_PORT);
  mqtt.setCallback(onMessage);
  mqtt.setBufferSize(1024);  // the default 256 bytes is too small for a batch of readings
  mqtt.setKeepAlive(60);
  nextRead = millis();
}

void loop() {
  tick();
  const uint32_t now = millis();
  if (!mqtt.connected()) {
    if (static_cast<int32_t>(now - nextAttempt) < 0) return;
    if (connectWifi() && connectMqtt()) {
      retryPauseMs = 1000;
    } else {
      nextAttempt = now + retryPauseMs;  // 1 s, 2 s, 4 s ... 30 s
      retryPauseMs = retryPauseMs >= 15000 ? 30000 : retryPauseMs * 2;
      return;
    }
  }
  mqtt.loop();  // receives: onMessage()
  runCommands();
  if (static_cast<int32_t>(now - nextHeartbeat) >= 0) {
    nextHeartbeat = now + HEARTBEAT_EVERY_MS;
    char message[portal::MESSAGE_MAX];
    if (portal::buildHeartbeat(message, sizeof message, FIRMWARE)) {
      mqtt.publish(topics.heartbeat, message);
    }
  }
  if (const char* batch = outbox.due(now, ACK_TIMEOUT_MS)) {
    mqtt.publish(topics.readings, batch);  // QoS 0: kept until acknowledged, then dropped
  }
}

# Copy this file to the board as config.py and fill it in (see README.md).

# Your Wi-Fi (2.4 GHz: ESP32 and Pico W boards do not see 5 GHz networks).
WIFI_SSID = "my-wifi"
WIFI_PASSWORD = "my-wifi-password"

# The MQTT broker of the portal (Mosquitto): its address as the board sees it, not "localhost".
BROKER_HOST = "192.168.1.10"
BROKER_PORT = 1883

# The device in the portal: its number, and the token shown once when it was created (or when
# its token was last rotated). The board logs in as dev-<DEVICE_ID> with the token as password.
DEVICE_ID = 7
DEVICE_TOKEN = "pd_paste-the-token-here"

# Leave as it is unless the portal's PORTAL_MQTT_TOPIC_PREFIX was changed.
TOPIC_PREFIX = "portal"

# Shown on the device's page (up to 64 characters).
FIRMWARE = "micropython-example 1.0.0"

# Pins: the relay (or an LED to try it out) and the analog sensor (ESP32: an ADC1 pin, 32-39;
# Pico W: 26-28).
RELAY_PIN = 5
SENSOR_PIN = 34
# Many relay modules switch on when their IN pin is low ("active low"): if yours clicks on at
# start and off on relay.on, set 0 here.
RELAY_ON = 1

# How often, in seconds.
READ_EVERY_S = 60  # a batch of readings
HEARTBEAT_EVERY_S = 30  # "still here", with the firmware above

# Optional: restart the board when the program hangs for this many seconds (machine.WDT).
# Leave None while you develop: once started, the watchdog also resets the board when you stop
# the program from Thonny.
WATCHDOG_S = None

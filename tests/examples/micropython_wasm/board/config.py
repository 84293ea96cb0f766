WIFI_SSID = "test-wifi"
WIFI_PASSWORD = "test-wifi-password"
BROKER_HOST = "broker"
DEVICE_ID = 7
DEVICE_TOKEN = "pd_not-a-real-token"
READ_EVERY_S = 3600
HEARTBEAT_EVERY_S = 3600
ACK_TIMEOUT_S = 0

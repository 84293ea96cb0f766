"""Devices over MQTT (MQTT.md): the bridge between a Mosquitto broker and the portal's services."""

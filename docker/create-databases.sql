-- One database per service: services share nothing but messages and HTTP.
CREATE DATABASE gateway;
CREATE DATABASE order_service;
CREATE DATABASE payment_service;
CREATE DATABASE matching_service;
CREATE DATABASE chain_service;
CREATE DATABASE notify_service;

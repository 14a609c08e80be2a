DROP TABLE withdrawal_holds;

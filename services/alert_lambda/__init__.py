"""The alert Lambda: a thin entry point over :mod:`fraudkit.alerts`.

Lambda calls ``services.alert_lambda.handler.lambda_handler``; locally,
:func:`fraudkit.alerts.invoke_alert_handler` imports and calls the same function.
"""

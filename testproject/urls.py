from django.urls import path

from testproject.tickets import views

urlpatterns = [
    path("tickets/<int:id>/", views.ticket_detail, name="ticket-detail"),
    path("tickets/", views.ticket_list, name="ticket-list"),
    path("async/tickets/<int:id>/", views.ticket_detail_async, name="ticket-detail-async"),
    path("async/tickets/", views.ticket_list_async, name="ticket-list-async"),
]
